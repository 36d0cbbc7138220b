// Command httpserver is a parkscope target: a plain net/http server whose
// goroutines park in netpoll (epoll_wait on the runtime's poller, futex on
// idle Ms) while it serves /hello.  net/http/pprof is registered so
// /debug/pprof/goroutine?debug=2 gives goroutine-level ground truth.
//
// Build (standard library only; works with Go 1.19 and newer):
//
//	cd examples/go/httpserver && go build -o httpserver .
//
// Run:
//
//	./httpserver [-addr 127.0.0.1:0]
//
// Once listening it prints one line on stdout:
//
//	{"listening":"127.0.0.1:PORT","pid":PID}
//
// SIGTERM or SIGINT shuts it down and exits with status 0.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"
	"time"
)

func hello(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "hello from parkscope httpserver\n")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (host:port; port 0 picks a free one)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("httpserver: ")

	http.HandleFunc("/hello", hello)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listen %s: %v", *addr, err)
	}
	line, err := json.Marshal(struct {
		Listening string `json:"listening"`
		PID       int    `json:"pid"`
	}{ln.Addr().String(), os.Getpid()})
	if err != nil {
		log.Fatal(err)
	}
	// Println on os.Stdout is a direct write(2): no buffering to flush.
	if _, err := fmt.Fprintln(os.Stdout, string(line)); err != nil {
		log.Fatal(err)
	}

	srv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // best effort; we exit 0 either way
		close(done)
	}()

	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
	<-done
	os.Exit(0)
}
