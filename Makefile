# make image: a static scuttlebutt binary in a FROM scratch image, tagged
# $(IMAGE). make up / make down: the five-agent cluster of docker-compose.yml.
IMAGE ?= scuttlebutt:latest

.PHONY: image binary up down clean

binary:
	CGO_ENABLED=0 go build -trimpath -o build/scuttlebutt ./scuttlebutt

image: binary
	docker build -t $(IMAGE) .

up: image
	docker-compose up -d

down:
	docker-compose down

clean:
	rm -rf build
