package server_test

// Benchmarks of the edge's hot paths through its exported API only, for
// `go test -bench` and its CPU and memory profiles (see docs/benchmarks.md).

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"handoff/pkg/bus"
	"handoff/pkg/catalog"
	wire "handoff/pkg/client"
	"handoff/pkg/sqldb/sqldbtest"
	"handoff/server"
)

func benchDraft(items int) *server.Draft {
	d := &server.Draft{ID: "d", Title: "Coffee", State: server.StateEditing}
	for i := range items {
		d.Items = append(d.Items, server.Item{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), SKU: "COF-ESP-1KG", Name: "Espresso beans, 1 kg", Quantity: 1})
	}
	return d
}

// BenchmarkApplyOp is the pure op application: ApplyOp on a draft of 20
// items with the shipped catalog, one kind of op per sub-benchmark; the
// "wire" variant adds what the socket path does around it (decode the op,
// apply, encode the applied copy).
func BenchmarkApplyOp(b *testing.B) {
	cat := catalog.Default()
	const items = 20
	last := fmt.Sprintf("00000000-0000-4000-8000-%012d", items-1)
	b.Run("update_item", func(b *testing.B) {
		d := benchDraft(items)
		q := 3.0
		op := &server.Op{Kind: server.OpUpdateItem, ItemID: last, Quantity: &q}
		b.ReportAllocs()
		for b.Loop() {
			if err := server.ApplyOp(d, op, cat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("set_title", func(b *testing.B) {
		d := benchDraft(items)
		b.ReportAllocs()
		for b.Loop() {
			t := "  Team order  "
			if err := server.ApplyOp(d, &server.Op{Kind: server.OpSetTitle, Title: &t}, cat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("add_remove_item", func(b *testing.B) {
		d := benchDraft(items)
		id := "11111111-1111-4111-8111-111111111111"
		add := &server.Op{Kind: server.OpAddItem, Item: &server.OpItem{ID: id, SKU: "TEA-GRN-100", Quantity: 2}}
		remove := &server.Op{Kind: server.OpRemoveItem, ItemID: id}
		b.ReportAllocs()
		for b.Loop() {
			if err := server.ApplyOp(d, add, cat); err != nil {
				b.Fatal(err)
			}
			if err := server.ApplyOp(d, remove, cat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire_update_item", func(b *testing.B) {
		d := benchDraft(items)
		frame := []byte(`{"kind":"update_item","item_id":"` + last + `","quantity":7}`)
		b.ReportAllocs()
		for b.Loop() {
			var op server.Op
			if err := json.Unmarshal(frame, &op); err != nil {
				b.Fatal(err)
			}
			if err := server.ApplyOp(d, &op, cat); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(&op); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchEdge is an in-process edge on a fresh database behind httptest.
type benchEdge struct {
	srv  *server.Server
	http *httptest.Server
}

func startBenchEdge(b *testing.B, url string, cfg server.Config) *benchEdge {
	b.Helper()
	db := sqldbtest.MustOpen(b, url)
	bs, err := bus.New(db, watermill.NopLogger{}, bus.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bs.Close() })
	ctx := context.Background()
	if err := server.Migrate(ctx, db, bs); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := server.New(db, bs, log, cfg)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Running():
	case err := <-done:
		b.Fatalf("edge stopped: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	b.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.CloseSockets(cctx)
		hs.Close()
		s.Close()
		<-done
	})
	return &benchEdge{srv: s, http: hs}
}

func benchBackends(b *testing.B, fn func(b *testing.B, url string)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, sqldbtest.SQLiteURL(b)) })
	b.Run("postgres", func(b *testing.B) { fn(b, sqldbtest.PostgresURL(b)) })
}

// BenchmarkOpRoundTrip is one op through the whole edge, one at a time:
// the frame is read and decoded, the op applied in a transaction (load the
// draft, check the client_op_id, write the change, the revision and the op
// log, commit), then broadcast, and its applied copy read back by the
// sender, the draft's only subscriber. ns/op is the acknowledgement
// latency without any concurrency.
func BenchmarkOpRoundTrip(b *testing.B) {
	benchBackends(b, func(b *testing.B, url string) {
		// No frame rate limit: the benchmark measures the work, not the guard.
		e := startBenchEdge(b, url, server.Config{FrameRate: 1 << 20})
		ctx := context.Background()
		c := wire.New(e.http.URL)
		if _, err := c.CreateTeam(ctx, "Bench", "Alice"); err != nil {
			b.Fatal(err)
		}
		d, err := c.CreateDraft(ctx, "Bench draft")
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.Dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Subscribe(ctx, d.ID); err != nil {
			b.Fatal(err)
		}
		item := "11111111-1111-4111-8111-111111111111"
		if err := s.Op(ctx, d.ID, "setup", 0, wire.AddItem(item, "COF-ESP-1KG", 1, "")); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Next(ctx, "applied"); err != nil {
			b.Fatal(err)
		}
		rev := int64(1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			op := map[string]any{"kind": "update_item", "item_id": item, "quantity": 1 + i%100}
			if err := s.Op(ctx, d.ID, fmt.Sprintf("op-%d", i), rev, op); err != nil {
				b.Fatal(err)
			}
			m, err := s.Next(ctx, "applied")
			if err != nil {
				b.Fatal(err)
			}
			rev = m.Revision
		}
	})
}

// BenchmarkIdleSocket measures what an idle authenticated socket costs the
// edge: live heap, goroutine stacks and goroutines per socket, after a
// forced GC. The client side is a bare TCP connection that did the upgrade
// by hand and holds no goroutine, so nearly everything counted is the
// server's. b.N is ignored; 1000 sockets are opened once.
func BenchmarkIdleSocket(b *testing.B) {
	benchBackends(b, func(b *testing.B, url string) {
		const n = 1000
		e := startBenchEdge(b, url, server.Config{}) // the defaults, as served
		ctx := context.Background()
		c := wire.New(e.http.URL)
		if _, err := c.CreateTeam(ctx, "Bench", "Alice"); err != nil {
			b.Fatal(err)
		}
		u, _ := http.NewRequest("GET", e.http.URL, nil)
		var cookie string
		for _, ck := range c.HTTP.Jar.Cookies(u.URL) {
			cookie += ck.Name + "=" + ck.Value
		}
		addr := strings.TrimPrefix(e.http.URL, "http://")
		// One socket first, so lazily built state is not counted.
		first := rawUpgrade(b, addr, cookie)
		defer first.Close()
		before := benchMem()
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			conns = append(conns, rawUpgrade(b, addr, cookie))
		}
		after := benchMem()
		if *idleHeapProfile != "" {
			writeHeapProfile(b, *idleHeapProfile+"."+b.Name()[strings.LastIndexByte(b.Name(), '/')+1:])
		}
		for b.Loop() {
		}
		b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/socket")
		b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/socket")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/socket")
		b.ReportMetric(float64(after.sys-before.sys)/n, "sys-B/socket")
	})
}

// idleHeapProfile, when set, names the heap profile that
// BenchmarkIdleSocket writes while its sockets are open (with the backend
// appended), e.g. go test -bench IdleSocket -memprofilerate 1 -args -idleheap /tmp/idle.heap
var idleHeapProfile = flag.String("idleheap", "", "BenchmarkIdleSocket: write a heap profile with the sockets open to this path")

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

type benchMemStats struct {
	heap, stack, sys uint64
	goroutines       int
}

func benchMem() benchMemStats {
	// Wait until the handshakes' goroutines have settled (their count holds
	// still across many scheduler turns), then collect twice so the figures
	// are live memory only.
	settleGoroutines(2 * time.Second)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return benchMemStats{heap: m.HeapInuse, stack: m.StackInuse, sys: m.Sys - m.HeapReleased, goroutines: runtime.NumGoroutine()}
}

// settleGoroutines returns once the number of goroutines has not changed
// for a thousand scheduler turns, or after limit.
func settleGoroutines(limit time.Duration) {
	deadline := time.Now().Add(limit)
	n, still := runtime.NumGoroutine(), 0
	for still < 1000 && time.Now().Before(deadline) {
		runtime.Gosched()
		if m := runtime.NumGoroutine(); m != n {
			n, still = m, 0
			continue
		}
		still++
	}
}

// rawUpgrade opens a WebSocket by hand and reads the 101 answer and the
// first frame (the hello), leaving nothing running on the client side.
func rawUpgrade(b testing.TB, addr, cookie string) net.Conn {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	req := "GET /api/ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: " + cookie + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		b.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b.Fatalf("upgrade: %s", resp.Status)
	}
	// The hello: a short unmasked text frame from the server.
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		b.Fatal(err)
	}
	size := int(hdr[1] & 0x7f)
	switch size {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			b.Fatal(err)
		}
		size = int(ext[0])<<8 | int(ext[1])
	case 127:
		b.Fatal("hello larger than 64 KiB")
	}
	if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
		b.Fatal(err)
	}
	conn.SetReadDeadline(time.Time{})
	return conn
}
