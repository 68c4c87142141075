package registry

import (
	"context"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is a real S3 API server in process: gofakes3 with its in-memory
// backend, on a loopback port.
type fakeS3 struct {
	URL     string
	backend *s3mem.Backend
}

// startFakeS3 starts a fake S3 server with the given buckets.
func startFakeS3(t *testing.T, buckets ...string) *fakeS3 { return startFakeS3At(t, nil, buckets...) }

// startFakeS3At starts a fake S3 server whose clock is clk (nil: the
// host's): the Last-Modified of the objects and the Date of its answers.
func startFakeS3At(t *testing.T, clk *storeClock, buckets ...string) *fakeS3 {
	t.Helper()
	var bopts []s3mem.Option
	var gopts []gofakes3.Option
	if clk != nil {
		bopts = append(bopts, s3mem.WithTimeSource(clk))
		gopts = append(gopts, gofakes3.WithTimeSource(clk), gofakes3.WithTimeSkewLimit(0))
	}
	be := s3mem.New(bopts...)
	for _, b := range buckets {
		if err := be.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	h := gofakes3.New(be, gopts...).Server()
	if clk != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat)) // net/http sets it only if absent
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fakeS3{URL: srv.URL, backend: be}
}

// storeClock is the clock of a store under test, set by the test: what
// the store stamps its entries with, and its time now.
type storeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newStoreClock(at time.Time) *storeClock { return &storeClock{now: at} }

// Now returns the store's time.
func (c *storeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since returns the store's time since t.
func (c *storeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// set sets the store's time.
func (c *storeClock) set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
}

// awsEnv sets the standard AWS environment of a test: endpoint and keys,
// no files, no instance metadata, no region (the default applies).
func awsEnv(t *testing.T, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":            endpoint,
		"AWS_ACCESS_KEY_ID":           "test-key",
		"AWS_SECRET_ACCESS_KEY":       "test-secret",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_PROFILE":                 "",
		"AWS_ENDPOINT_URL_S3":         "",
		"AWS_SESSION_TOKEN":           "",
	} {
		t.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

// openS3Registry opens s3://bucket/prefix on the fake server through the
// standard environment, as the daemon does.
func (f *fakeS3) open(t *testing.T, bucket, prefix string) Registry {
	t.Helper()
	awsEnv(t, f.URL)
	r, err := Open(context.Background(), "s3://"+bucket+"/"+prefix)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// client is a plain SDK client of the fake server, for writes the
// registry would not make.
func (f *fakeS3) client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(f.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("test-key", "test-secret", ""),
	})
}

// rawPut stores body under key of bucket as it is.
func (f *fakeS3) rawPut(t *testing.T, bucket, key, body string) {
	t.Helper()
	_, err := f.client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// entryAt is an entry of node id written at t.
func entryAt(id string, t time.Time) Entry {
	return Entry{ID: id, Addr: "127.0.0.1:" + portOf(id), Time: t}
}

// portOf gives each test ID its own port.
func portOf(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return strconv.Itoa(1024 + int(h.Sum32()%60000))
}
