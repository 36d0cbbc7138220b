// Command parkedcgo is a parkscope target with goroutines blocked inside C calls: the
// runtime's own dump says only "syscall" for them, while parkscope should say cgo and name the
// C function. Built with CGO_ENABLED=1 (needs gcc); kept apart from examples/go/parked so that
// one builds without a C toolchain.
//
//	cd examples/go/parkedcgo && CGO_ENABLED=1 go build -o parkedcgo .
//	./parkedcgo [-n 2]
//
// Each of -n goroutines calls parkscope_c_block(fd), a C function that blocks in read(2) on a
// pipe nobody writes to. net/http/pprof is served on 127.0.0.1 for ground truth. stdout:
//
//	{"pid":PID,"pprof":"127.0.0.1:PORT","go":"go1.27.3","pipe_fds":[..],"counts":{"cgo_read":N}}
//	{"ready":true,"pid":PID}
package main

/*
#include <unistd.h>

// Blocks in read(2) until the pipe is written to (never).
__attribute__((noinline)) int parkscope_c_block(int fd) {
	char c;
	return (int)read(fd, &c, 1);
}
*/
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

//go:noinline
func parkedInC(fd int) { C.parkscope_c_block(C.int(fd)) }

func main() {
	n := flag.Int("n", 2, "goroutines blocked in C")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("parkedcgo: ")

	pprofLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(pprofLn, nil)

	var fds []int
	for i := 0; i < *n; i++ {
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil {
			log.Fatal(err)
		}
		fds = append(fds, p[0])
		go parkedInC(p[0])
	}
	time.Sleep(500 * time.Millisecond)

	// The signal handler is set up before the ready line, so all main does after printing it
	// is park on the receive: the population is static from then on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	info, err := json.Marshal(map[string]any{
		"pid": os.Getpid(), "pprof": pprofLn.Addr().String(), "go": runtime.Version(),
		"pipe_fds": fds, "counts": map[string]int{"cgo_read": *n},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stdout, string(info))
	fmt.Fprintf(os.Stdout, "{\"ready\":true,\"pid\":%d}\n", os.Getpid())

	<-sigs
	os.Exit(0)
}
