// Command parked is a parkscope target with a known, static goroutine population: every
// goroutine it starts parks for good in one known place, so a goroutine dump taken from the
// outside can be checked one for one against the runtime's own dump.
//
// Build (standard library only; Go 1.19 and newer; no cgo needed):
//
//	cd examples/go/parked && go build -o parked .
//
// Run:
//
//	./parked [-n 3] [-many 0]
//
// Populations (each -n goroutines unless noted):
//
//	tcp_read   conn.Read on a loopback TCP connection whose peer never writes   (IO wait)
//	chan_recv  receive on a channel nobody sends on                             (chan receive)
//	chan_send  send on an unbuffered channel nobody receives from               (chan send)
//	select     select on two channels that never become ready                  (select)
//	mutex      sync.Mutex.Lock on a mutex main holds forever                    (sync.Mutex.Lock; semacquire on 1.19)
//	sleep      time.Sleep(1h)                                                   (sleep)
//	pipe_read  one goroutine in a raw syscall.Read on a pipe nobody writes      (status syscall)
//	many       -many goroutines receiving on one channel (the 100k benchmark)   (chan receive)
//	late       one more on every SIGUSR1, parked on a channel receive at a time it reports  (chan receive)
//
// net/http/pprof is served on 127.0.0.1 so /debug/pprof/goroutine?debug=2 gives the runtime's
// own dump of the same process (run with GOTRACEBACK=system to include runtime goroutines).
//
// stdout, one JSON object per line, once every population is parked:
//
//	{"pid":PID,"pprof":"127.0.0.1:PORT","go":"go1.27.3","tcp_read_fds":[..],"tcp_peer_fds":[..],
//	 "pipe_fd":N,"counts":{"tcp_read":3,...}}
//	{"ready":true,"pid":PID}
//
// and after each SIGUSR1, once the new late goroutine is about to park (CLOCK_MONOTONIC, the
// clock of the runtime's nanotime and of bpf_ktime_get_ns, read just before it parks):
//
//	{"late_goid":G,"late_parked_ns":T}
//
// SIGTERM or SIGINT exits with status 0.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Channels and the mutex are package-level so nothing ever makes them ready.
var (
	neverSent   = make(chan int)
	neverRecvd  = make(chan int)
	selectA     = make(chan int)
	selectB     = make(chan string)
	manyChan    = make(chan struct{})
	lateChan    = make(chan struct{})
	heldMutex   sync.Mutex
	sinkCounter int
)

//go:noinline
func parkedTCPRead(c net.Conn) {
	buf := make([]byte, 1)
	c.Read(buf) // the peer never writes
}

//go:noinline
func parkedChanRecv() { <-neverSent }

//go:noinline
func parkedChanSend() { neverRecvd <- 1 }

//go:noinline
func parkedSelect() {
	select {
	case <-selectA:
	case <-selectB:
	}
}

//go:noinline
func parkedMutex() {
	heldMutex.Lock()
	sinkCounter++
	heldMutex.Unlock()
}

//go:noinline
func parkedSleep() { time.Sleep(time.Hour) }

//go:noinline
func parkedPipeRead(fd int) {
	buf := make([]byte, 1)
	syscall.Read(fd, buf) // a raw read(2): the goroutine holds its M in the syscall
}

//go:noinline
func parkedMany() { <-manyChan }

// lateInfo is what a late goroutine reports before it parks.
type lateInfo struct {
	Goid     int64 `json:"late_goid"`
	ParkedNs int64 `json:"late_parked_ns"`
}

// monotonicNs reads CLOCK_MONOTONIC (the clock the runtime's nanotime and eBPF's
// bpf_ktime_get_ns read) without entering the scheduler.
func monotonicNs() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Sec*1e9 + ts.Nsec
}

// currentGoid parses this goroutine's id from the header of its own stack dump.
func currentGoid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id int64
	fmt.Sscanf(string(buf), "goroutine %d ", &id)
	return id
}

//go:noinline
func parkedLate(report chan<- lateInfo) {
	info := lateInfo{Goid: currentGoid()}
	info.ParkedNs = monotonicNs()
	report <- info // buffered: does not park
	<-lateChan
}

// fdOf returns the OS fd behind a TCP connection.
func fdOf(c net.Conn) int {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		log.Fatal(err)
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func main() {
	n := flag.Int("n", 3, "goroutines per population")
	many := flag.Int("many", 0, "extra goroutines parked on one channel (benchmark population)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("parked: ")
	heldMutex.Lock() // held forever: the mutex population queues behind it

	pprofLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(pprofLn, nil)

	// Loopback pairs: the parked side reads, the peer (kept here, never written) holds the
	// connection open.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var readFds, peerFds []int
	var peers []net.Conn
	for i := 0; i < *n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		p, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		peers = append(peers, p)
		readFds = append(readFds, fdOf(c))
		peerFds = append(peerFds, fdOf(p))
		go parkedTCPRead(c)
	}
	ln.Close()

	var pipeFds [2]int
	if err := syscall.Pipe(pipeFds[:]); err != nil {
		log.Fatal(err)
	}
	go parkedPipeRead(pipeFds[0])

	for i := 0; i < *n; i++ {
		go parkedChanRecv()
		go parkedChanSend()
		go parkedSelect()
		go parkedMutex()
		go parkedSleep()
	}
	for i := 0; i < *many; i++ {
		go parkedMany()
	}

	// Let every goroutine reach its parking place before claiming the population is static.
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 50 && !allParked(); i++ {
		time.Sleep(100 * time.Millisecond)
	}

	// The signal handler is set up before the ready line, so all main does after printing it
	// is park on the receive: the population is static from then on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)

	info, err := json.Marshal(map[string]any{
		"pid":          os.Getpid(),
		"pprof":        pprofLn.Addr().String(),
		"go":           runtime.Version(),
		"tcp_read_fds": readFds,
		"tcp_peer_fds": peerFds,
		"pipe_fd":      pipeFds[0],
		"counts": map[string]int{
			"tcp_read": *n, "chan_recv": *n, "chan_send": *n, "select": *n,
			"mutex": *n, "sleep": *n, "pipe_read": 1, "many": *many,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stdout, string(info))
	fmt.Fprintf(os.Stdout, "{\"ready\":true,\"pid\":%d}\n", os.Getpid())

	reports := make(chan lateInfo, 1)
	for sig := range sigs {
		if sig != syscall.SIGUSR1 {
			break
		}
		go parkedLate(reports)
		line, err := json.Marshal(<-reports)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintln(os.Stdout, string(line))
	}
	_ = peers
	os.Exit(0)
}

// allParked reports whether no goroutine but this one is runnable or running, judged by the
// runtime's own dump of all goroutines.
func allParked() bool {
	buf := make([]byte, 1<<20)
	for {
		k := runtime.Stack(buf, true)
		if k < len(buf) {
			buf = buf[:k]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	busy := 0
	for _, line := range strings.Split(string(buf), "\n") {
		if strings.HasPrefix(line, "goroutine ") &&
			(strings.Contains(line, "[running]") || strings.Contains(line, "[runnable]")) {
			busy++
		}
	}
	return busy <= 1
}
