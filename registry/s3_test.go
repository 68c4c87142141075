package registry

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestFakeS3ConditionalWrites checks, before the other tests rely on it,
// that the S3 server of the tests (github.com/johannesboyne/gofakes3
// v1.2.0, in-memory backend) implements the conditional writes the
// registry's claims are made of, as AWS S3 does: PUT with If-None-Match: *
// fails with 412 if the object exists, PUT with If-Match: ETag fails with
// 412 if the object's ETag differs (or it does not exist), and of many
// such PUTs at once on the same condition exactly one succeeds.
func TestFakeS3ConditionalWrites(t *testing.T) {
	f := startFakeS3(t, "bucket")
	c := f.client()
	ctx := context.Background()
	put := func(key, body string, ifNoneMatch, ifMatch *string) (string, error) {
		out, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bucket"), Key: aws.String(key), Body: strings.NewReader(body),
			IfNoneMatch: ifNoneMatch, IfMatch: ifMatch,
		})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	want412 := func(what string, err error) {
		t.Helper()
		if httpStatus(err) != 412 || !isConflict(err) {
			t.Fatalf("%s: %v (HTTP %d), want 412 Precondition Failed", what, err, httpStatus(err))
		}
	}
	star := aws.String("*")
	etag1, err := put("k", "one", star, nil)
	if err != nil || etag1 == "" {
		t.Fatalf("If-None-Match: * on a new key: %q, %v", etag1, err)
	}
	_, err = put("k", "two", star, nil)
	want412("If-None-Match: * on an existing key", err)
	_, err = put("k", "two", nil, aws.String(`"0123456789abcdef0123456789abcdef"`))
	want412("If-Match with another ETag", err)
	_, err = put("missing", "two", nil, aws.String(etag1))
	if !isConflict(err) {
		t.Fatalf("If-Match on a missing key: %v, want a conflict", err)
	}
	etag2, err := put("k", "two", nil, aws.String(etag1))
	if err != nil || etag2 == etag1 {
		t.Fatalf("If-Match with the current ETag: %q, %v", etag2, err)
	}
	_, err = put("k", "three", nil, aws.String(etag1))
	want412("If-Match with the ETag before the last write", err)

	// Many at once: exactly one wins each condition.
	for _, cond := range []struct {
		name        string
		key         string
		ifNoneMatch *string
		ifMatch     *string
	}{
		{"If-None-Match: *", "race", star, nil},
		{"If-Match", "k", nil, aws.String(etag2)},
	} {
		var won, lost atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := put(cond.key, "writer "+string(rune('a'+i)), cond.ifNoneMatch, cond.ifMatch)
				switch {
				case err == nil:
					won.Add(1)
				case isConflict(err):
					lost.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 || lost.Load() != 19 {
			t.Fatalf("%s, 20 at once: %d won, %d lost; want 1 and 19", cond.name, won.Load(), lost.Load())
		}
	}
}

func TestS3MissingBucket(t *testing.T) {
	f := startFakeS3(t, "bucket")
	r := f.open(t, "no-such-bucket", "p")
	ctx := context.Background()
	for name, err := range map[string]error{
		"Put":   r.Put(ctx, entryAt("a", time.Now())),
		"Claim": r.Claim(ctx, 0, entryAt("a", time.Now()), time.Minute),
		"List": func() error {
			_, err := r.List(ctx)
			return err
		}(),
	} {
		if err == nil || !strings.Contains(err.Error(), `the bucket "no-such-bucket" does not exist at `+f.URL) || !strings.Contains(err.Error(), "create it") {
			t.Errorf("%s in a missing bucket: %v", name, err)
		}
	}
}

func TestS3Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	awsEnv(t, endpoint)
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	r, err := Open(context.Background(), "s3://bucket/p")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach "+endpoint) || !strings.Contains(err.Error(), "AWS_ENDPOINT_URL") {
		t.Fatalf("List of an unreachable store: %v", err)
	}
}

func TestS3MissingCredentials(t *testing.T) {
	f := startFakeS3(t, "bucket")
	awsEnv(t, f.URL)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	r, err := Open(context.Background(), "s3://bucket/p")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.Put(context.Background(), entryAt("a", time.Now()))
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials found") || !strings.Contains(err.Error(), "AWS_PROFILE") {
		t.Fatalf("Put without credentials: %v", err)
	}
	t.Logf("without credentials, after %v: %v", time.Since(start), err)
}

// TestS3Endpoints: AWS_ENDPOINT_URL alone, with localhost or an IP
// address, is addressed path-style; the URL's parameters override the
// environment.
func TestS3Endpoints(t *testing.T) {
	f := startFakeS3(t, "bucket")
	ctx := context.Background()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(f.URL, "http://"))
	for _, tc := range []struct{ env, url string }{
		{"http://localhost:" + port, "s3://bucket/a"},
		{"http://127.0.0.1:" + port, "s3://bucket/b"},
		{"http://127.0.0.1:1", "s3://bucket/c?endpoint=http://127.0.0.1:" + port + "&region=eu-west-3"},
		{"", "s3://bucket/d?endpoint=http://localhost:" + port + "&path-style=true"},
	} {
		awsEnv(t, tc.env)
		r, err := Open(ctx, tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Put(ctx, entryAt("a", time.Now())); err != nil {
			t.Errorf("AWS_ENDPOINT_URL=%s, %s: %v", tc.env, tc.url, err)
		}
	}
	if !localEndpoint("http://[::1]:9000") || !localEndpoint("http://minio.localhost") || localEndpoint("https://s3.example.com") {
		t.Error("localEndpoint")
	}
}

func TestOpenBadURLs(t *testing.T) {
	ctx := context.Background()
	for raw, want := range map[string]string{
		"ftp://x/y":                "unknown scheme \"ftp\"",
		"s3:///prefix":             "the bucket is missing",
		"s3://b/p?regoin=x":        "unknown parameter \"regoin\"",
		"s3://b/p?path-style=yes!": "path-style",
		"s3://b/p?endpoint=nohost": "endpoint",
		"file://host/x":            "has no host",
		"file:relative/x":          "absolute path",
		"dns://":                   "dns://NAME[:PORT]",
		"dns://name/path":          "dns://NAME[:PORT]",
		"dns://name:99999":         "port",
		"dns+srv://name:7":         "SRV records carry the port",
		"%zz":                      "registry URL",
	} {
		_, err := Open(ctx, raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error saying %q", raw, err, want)
		}
	}
}

func TestRegister(t *testing.T) {
	called := false
	Register("Test-Store", func(_ context.Context, u *url.URL) (Registry, error) {
		called = u.Host == "x"
		return NewFile(t.TempDir()), nil
	})
	if _, err := Open(context.Background(), "test-store://x"); err != nil || !called {
		t.Fatalf("Open of a registered scheme: %v, called %v", err, called)
	}
	if !strings.Contains(strings.Join(Schemes(), ","), "test-store") {
		t.Fatal("Schemes does not list it")
	}
	_, err := Open(context.Background(), "nope://x")
	if err == nil || !strings.Contains(err.Error(), "test-store") {
		t.Fatalf("the error of an unknown scheme does not list the registered ones: %v", err)
	}
}
