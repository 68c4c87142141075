package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3 is a registry in an S3 bucket (AWS S3, MinIO, anything with their
// API): s3://BUCKET/PREFIX.
//
// Heartbeats are objects PREFIX/agents/<ID>.json; server slots are objects
// PREFIX/servers/<slot>.json. A claim reads the slot and writes it with a
// conditional PUT: If-None-Match: * when it does not exist, If-Match: the
// ETag read when it does. S3 refuses a conditional PUT whose condition no
// longer holds with 412 Precondition Failed (or 409 when two are in flight
// at once), so of two claimers that read the same slot exactly one writes
// it, and the other gets ErrTaken.
type S3 struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	endpoint string // for messages: the endpoint, or "" for AWS
}

var _ Registry = (*S3)(nil)

// NewS3 returns the registry under prefix in bucket, through client.
// endpoint is only named in error messages ("" for AWS).
func NewS3(client *s3.Client, bucket, prefix, endpoint string) *S3 {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, bucket: bucket, prefix: prefix, endpoint: endpoint}
}

// openS3 opens s3://BUCKET/PREFIX[?endpoint=URL&region=R&path-style=true].
// Credentials, region and endpoint come from the standard AWS environment
// and files (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
// ...); the query overrides the last three. An endpoint whose host is an IP
// address or localhost is addressed path-style (http://host/bucket/key), as
// MinIO on a LAN needs.
func openS3(ctx context.Context, u *url.URL) (Registry, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("registry %s: the bucket is missing; want s3://BUCKET/PREFIX", u.Redacted())
	}
	var (
		endpoint, region string
		pathStyle        *bool
	)
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			if e, err := url.Parse(v); err != nil || e.Host == "" || (e.Scheme != "http" && e.Scheme != "https") {
				return nil, fmt.Errorf("registry %s: endpoint %q: want http(s)://host[:port]", u.Redacted(), v)
			}
			endpoint = v
		case "region":
			region = v
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("registry %s: path-style %q: want true or false", u.Redacted(), v)
			}
			pathStyle = &b
		default:
			return nil, fmt.Errorf("registry %s: unknown parameter %q; want endpoint, region or path-style", u.Redacted(), k)
		}
	}
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: loading the AWS configuration (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE): %w", u.Redacted(), err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // MinIO's and S3's default; AWS redirects otherwise, and we say to set AWS_REGION
	}
	// Checksums only where the API requires them: S3-compatible stores
	// do not all accept the newer default ones.
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	var used string
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if o.BaseEndpoint != nil {
			used = *o.BaseEndpoint
			o.UsePathStyle = localEndpoint(used)
		}
		if pathStyle != nil {
			o.UsePathStyle = *pathStyle
		}
	})
	return NewS3(client, u.Host, u.Path, used), nil
}

// localEndpoint tells whether an endpoint's host is an IP address or
// localhost, which virtual-hosted-style addressing (bucket.host) cannot
// reach.
func localEndpoint(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	h := u.Hostname()
	return net.ParseIP(h) != nil || h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// String returns the registry's URL.
func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3) heartbeatKey(id string) string { return s.prefix + AgentsDir + heartbeatName(id) }
func (s *S3) slotKey(slot int) string       { return s.prefix + ServersDir + strconv.Itoa(slot) + ".json" }

// Put writes e as node e.ID's heartbeat.
func (s *S3) Put(ctx context.Context, e Entry) error {
	b, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("registry: heartbeat of %q: %w", e.ID, err)
	}
	key := s.heartbeatKey(e.ID)
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b), ContentType: aws.String("application/json"),
	})
	return s.fail("writing", key, err)
}

// Delete removes node e.ID's heartbeat.
func (s *S3) Delete(ctx context.Context, e Entry) error {
	key := s.heartbeatKey(e.ID)
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if isNotFound(err) {
		return nil
	}
	return s.fail("deleting", key, err)
}

// listConcurrency bounds the GETs of one List.
const listConcurrency = 16

// List returns the slots and the heartbeats: one LIST, then a GET of each
// object.
func (s *S3) List(ctx context.Context) ([]Entry, error) {
	type item struct {
		key, rel string
		slot     int
	}
	var items []item
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.fail("listing", s.prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			rel := strings.TrimPrefix(key, s.prefix)
			switch {
			case strings.HasPrefix(rel, ServersDir):
				n, ok := strings.CutSuffix(strings.TrimPrefix(rel, ServersDir), ".json")
				slot, err := strconv.Atoi(n)
				if ok && err == nil && slot >= 0 {
					items = append(items, item{key, rel, slot})
				}
			case strings.HasPrefix(rel, AgentsDir) && !strings.Contains(strings.TrimPrefix(rel, AgentsDir), "/"):
				items = append(items, item{key, rel, -1})
			}
		}
	}
	type result struct {
		e     Entry
		ok    bool
		bad   error
		fatal error
	}
	results := make([]result, len(items))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := &results[i]
			if it.slot < 0 {
				if _, ok := idOfHeartbeat(strings.TrimPrefix(it.rel, AgentsDir)); !ok {
					r.bad = &EntryError{Key: it.rel, Err: errors.New("not a heartbeat's name (<ID>.json)")}
					return
				}
			}
			o, exists, err := s.get(ctx, it.key)
			switch {
			case err != nil:
				r.fatal = err
			case !exists:
				// deleted since the listing
			default:
				e, err := decodeEntry(it.rel, o.body)
				if err != nil {
					r.bad = err
					return
				}
				e.Slot = it.slot
				e.aged(o.stored, o.now)
				r.e, r.ok = e, true
			}
		}()
	}
	wg.Wait()
	var out []Entry
	var bad []error
	for _, r := range results {
		if r.fatal != nil {
			return nil, r.fatal
		}
		if r.bad != nil {
			bad = append(bad, r.bad)
		}
		if r.ok {
			out = append(out, r.e)
		}
	}
	sortEntries(out)
	return out, errors.Join(bad...)
}

// object is an object as read: its ETag and body, and two times by the
// store's clock: when it was stored (Last-Modified) and when it was read
// (the answer's Date); zero when the store did not say.
type object struct {
	etag        string
	body        []byte
	stored, now time.Time
}

// get reads an object, or returns exists false.
func (s *S3) get(ctx context.Context, key string) (o object, exists bool, err error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if isNotFound(err) {
		return object{}, false, nil
	}
	if err != nil {
		return object{}, false, s.fail("reading", key, err)
	}
	defer out.Body.Close()
	o.body, err = io.ReadAll(io.LimitReader(out.Body, MaxEntrySize+1))
	if err != nil {
		return object{}, false, s.fail("reading", key, err)
	}
	o.etag = aws.ToString(out.ETag)
	o.stored = aws.ToTime(out.LastModified)
	o.now, _ = awsmiddleware.GetServerTime(out.ResultMetadata)
	return o, true, nil
}

// Claim makes e the holder of slot.
func (s *S3) Claim(ctx context.Context, slot int, e Entry, expiry time.Duration) error {
	return s.write(ctx, slot, e, claimable(e, expiry))
}

// Release gives up slot if e.ID holds it.
func (s *S3) Release(ctx context.Context, slot int, e Entry) error {
	e.Released = true
	return s.write(ctx, slot, e, releasable(e))
}

// write writes e to slot with a conditional PUT if decide, given the
// current entry (nil: none, or unparseable), says so.
func (s *S3) write(ctx context.Context, slot int, e Entry, decide func(cur *Entry) (bool, error)) error {
	if slot < 0 {
		return fmt.Errorf("registry: slot %d: want 0 or more", slot)
	}
	b, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("registry: claim of %q: %w", e.ID, err)
	}
	key := s.slotKey(slot)
	for range claimAttempts {
		o, exists, err := s.get(ctx, key)
		if err != nil {
			return err
		}
		var cur *Entry
		if exists {
			if c, err := decodeEntry(strings.TrimPrefix(key, s.prefix), o.body); err == nil {
				c.aged(o.stored, o.now)
				cur = &c
			}
		}
		ok, err := decide(cur)
		if !ok || err != nil {
			return err
		}
		in := &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b), ContentType: aws.String("application/json")}
		if exists {
			in.IfMatch = aws.String(o.etag)
		} else {
			in.IfNoneMatch = aws.String("*")
		}
		_, err = s.client.PutObject(ctx, in)
		if isConflict(err) {
			continue // another node wrote the slot first: read it
		}
		return s.fail("claiming", key, err)
	}
	return ErrTaken
}

// isNotFound tells whether err is S3's answer for a missing object.
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound") {
		return true
	}
	return httpStatus(err) == http.StatusNotFound && !isCode(err, "NoSuchBucket")
}

// isConflict tells whether a conditional PUT lost: 412 when the condition
// failed, 409 when another conditional write was in flight, 404 when an
// If-Match object was deleted.
func isConflict(err error) bool {
	switch httpStatus(err) {
	case http.StatusPreconditionFailed, http.StatusConflict:
		return true
	case http.StatusNotFound:
		return !isCode(err, "NoSuchBucket")
	}
	return false
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// fail turns an error of the S3 API into one that says what to check.
func (s *S3) fail(op, key string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	where := s.endpoint
	if where == "" {
		where = "AWS S3"
	}
	var hint string
	status := httpStatus(err)
	var ne net.Error
	switch {
	case isCode(err, "NoSuchBucket"):
		hint = fmt.Sprintf("the bucket %q does not exist at %s: create it, or check the bucket name, AWS_REGION and AWS_ENDPOINT_URL", s.bucket, where)
	case isCode(err, "InvalidAccessKeyId", "SignatureDoesNotMatch"):
		hint = "the credentials are wrong: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the keys of AWS_PROFILE)"
	case isCode(err, "AccessDenied") || status == http.StatusForbidden:
		hint = fmt.Sprintf("access denied to s3://%s/%s: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that their policy allows s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket", s.bucket, s.prefix)
	case isCode(err, "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException") || status == http.StatusMovedPermanently:
		hint = fmt.Sprintf("the bucket %q is in another region: set AWS_REGION (or ?region= in the registry URL)", s.bucket)
	case strings.Contains(err.Error(), "get identity") || strings.Contains(err.Error(), "retrieve credentials"):
		hint = "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role"
	case errors.As(err, &ne) || strings.Contains(err.Error(), "dial tcp") || strings.Contains(err.Error(), "connection refused"):
		hint = fmt.Sprintf("cannot reach %s: check AWS_ENDPOINT_URL (or ?endpoint= in the registry URL) and the network", where)
	default:
		hint = "the store refused the request"
	}
	return fmt.Errorf("registry %s: %s %s: %s: %w", s.String(), op, key, hint, err)
}
