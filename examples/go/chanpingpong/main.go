// Command chanpingpong is the channel-heavy Go workload of parkscope's benchmarks: -pairs
// pairs of goroutines bounce a token over two unbuffered channels, so every round trip parks
// and readies each goroutine of the pair once. Nothing else runs, so the rate measures what
// a goroutine park and ready costs, which the opt-in --go-uprobes mode adds to.
//
// Build (standard library only; Go 1.19 and newer):
//
//	cd examples/go/chanpingpong && go build -o chanpingpong .
//
// Run:
//
//	./chanpingpong [-pairs 4] [-duration 5s] [-start-delay 0s] [-hold]
//
// stdout: {"pid":PID,"ready":true} at once (attach tracers during -start-delay), then when
// the run ends one line
//
//	{"round_trips":N,"seconds":F,"round_trips_per_sec":F,"pairs":P,"gomaxprocs":G}
//
// With -hold it then stays (idle) until SIGINT or SIGTERM, so a tracer can take its final view
// of a live process. Bad flags exit with status 2.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

//go:noinline
func ping(to chan<- int, from <-chan int, stop *atomic.Bool, count *atomic.Int64) {
	n := int64(0)
	for !stop.Load() {
		to <- 1
		<-from
		n++
	}
	count.Add(n)
	close(to)
}

//go:noinline
func pong(from <-chan int, to chan<- int) {
	for v := range from {
		to <- v
	}
}

func main() {
	pairs := flag.Int("pairs", 4, "goroutine pairs bouncing a token")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	delay := flag.Duration("start-delay", 0, "wait this long after the ready line before starting")
	hold := flag.Bool("hold", false, "after the summary, stay until SIGINT or SIGTERM")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("chanpingpong: ")
	if *pairs < 1 || *duration <= 0 || *delay < 0 {
		fmt.Fprintln(os.Stderr, "chanpingpong: -pairs must be >= 1, -duration > 0, -start-delay >= 0")
		os.Exit(2)
	}
	fmt.Printf("{\"pid\":%d,\"ready\":true}\n", os.Getpid())
	time.Sleep(*delay)

	var stop atomic.Bool
	var count atomic.Int64
	var wg sync.WaitGroup
	started := time.Now()
	for i := 0; i < *pairs; i++ {
		a, b := make(chan int), make(chan int)
		wg.Add(2)
		go func() { defer wg.Done(); ping(a, b, &stop, &count) }()
		go func() { defer wg.Done(); pong(a, b) }()
	}
	time.Sleep(*duration)
	stop.Store(true)
	wg.Wait()
	secs := time.Since(started).Seconds()
	out, err := json.Marshal(map[string]any{
		"round_trips":         count.Load(),
		"seconds":             secs,
		"round_trips_per_sec": float64(count.Load()) / secs,
		"pairs":               *pairs,
		"gomaxprocs":          runtime.GOMAXPROCS(0),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	if *hold {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
	}
}
