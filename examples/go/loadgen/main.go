// Command loadgen is a small HTTP load generator for parkscope benchmarks and
// demos (standard library only; builds with Go 1.19 and newer).
//
// It opens -conns keep-alive connections, each driven by one goroutine that
// loops GET -url until -duration has passed, then prints one line on stdout:
//
//	{"requests":N,"seconds":F,"rps":F,"errors":E}
//
// requests counts completed 2xx responses whose body was read in full; errors
// counts failed requests and non-2xx responses (requests cut off by the end
// of the run are not counted at all).  The exit status is 1 if no request
// succeeded, 2 on bad flags.
//
// Only loopback targets are allowed: the URL host must be 127.0.0.1,
// localhost or ::1, every dialled address must be a loopback IP, redirects are
// not followed, and proxy environment variables are ignored.
//
// Build:
//
//	cd examples/go/loadgen && go build -o loadgen .
//
// Run:
//
//	./loadgen -url http://127.0.0.1:PORT/hello [-conns 16] [-duration 5s]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const maxDuration = time.Hour

var errNotLoopback = errors.New("refusing to connect to a non-loopback address")

// checkURL accepts only http URLs whose host is 127.0.0.1, localhost or ::1.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q not supported (want http)", u.Scheme)
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return u, nil
	default:
		return nil, fmt.Errorf("host %q is not loopback (allowed: 127.0.0.1, localhost, ::1)", u.Hostname())
	}
}

// loopbackOnly runs just before connect(2) with the resolved address.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", errNotLoopback, address)
	}
	return nil
}

func main() {
	rawURL := flag.String("url", "", "target URL, e.g. http://127.0.0.1:8080/hello (loopback only)")
	conns := flag.Int("conns", 16, "concurrent keep-alive connections (one goroutine each)")
	duration := flag.Duration("duration", 5*time.Second, "how long to run (max 1h)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("loadgen: ")

	if *rawURL == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		flag.Usage()
		os.Exit(2)
	}
	u, err := checkURL(*rawURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: bad -url: %v\n", err)
		os.Exit(2)
	}
	if *conns < 1 || *conns > 10000 {
		fmt.Fprintln(os.Stderr, "loadgen: -conns must be in 1..10000")
		os.Exit(2)
	}
	if *duration <= 0 || *duration > maxDuration {
		fmt.Fprintf(os.Stderr, "loadgen: -duration must be in (0, %v]\n", maxDuration)
		os.Exit(2)
	}

	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: loopbackOnly}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // never use HTTP(S)_PROXY
			DialContext:         dialer.DialContext,
			MaxIdleConns:        *conns,
			MaxIdleConnsPerHost: *conns,
			MaxConnsPerHost:     *conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	// Hard stop in case something hangs past the deadline.
	time.AfterFunc(*duration+30*time.Second, func() {
		log.Print("watchdog: run did not finish in time")
		os.Exit(3)
	})

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	var requests, errCount atomic.Int64
	var firstErr sync.Once
	noteErr := func(err error) {
		errCount.Add(1)
		firstErr.Do(func() { log.Printf("first error: %v", err) })
	}
	target := u.String()

	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
				if err != nil {
					noteErr(err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					noteErr(err)
					if errors.Is(err, errNotLoopback) {
						return
					}
					time.Sleep(10 * time.Millisecond) // don't spin on e.g. ECONNREFUSED
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil && ctx.Err() != nil:
					return
				case err != nil:
					noteErr(err)
				case resp.StatusCode < 200 || resp.StatusCode > 299:
					noteErr(fmt.Errorf("status %s", resp.Status))
				default:
					requests.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()

	n := requests.Load()
	rps := 0.0
	if secs > 0 {
		rps = float64(n) / secs
	}
	line, err := json.Marshal(struct {
		Requests int64   `json:"requests"`
		Seconds  float64 `json:"seconds"`
		RPS      float64 `json:"rps"`
		Errors   int64   `json:"errors"`
	}{n, secs, rps, errCount.Load()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))
	if n == 0 {
		os.Exit(1)
	}
}
