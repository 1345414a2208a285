package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"handoff/pkg/catalog"
	"handoff/pkg/client"
	"handoff/pkg/sqldb"
	"handoff/pkg/sqldb/sqldbtest"
)

var (
	chaosDrafts = flag.Int("chaos.drafts", 40, "drafts to submit per backend in the chaos test")
	chaosKills  = flag.Int("chaos.kills", 10, "interior processes to SIGKILL per backend")
	chaosTeams  = flag.Int("chaos.teams", 8, "teams submitting at once")
)

// TestChaos submits drafts from concurrent members, duplicate submits
// included, with declines and transient payment errors, while interior
// processes are killed with SIGKILL and the edge once; then checks from
// the database and the provider's ledger that nothing was lost or done
// twice. `make chaos` runs it at full size.
func TestChaos(t *testing.T) {
	total := &chaosResult{}
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			url := sqldbtest.SQLiteURL(t)
			if backend == "postgres" {
				url = sqldbtest.PostgresURL(t)
			}
			r := runChaos(t, url, *chaosDrafts, *chaosKills, *chaosTeams)
			fmt.Printf("chaos: backend=%s %d submitted, %d completed, %d failed, %d lost, %d duplicated\n",
				backend, r.submitted, r.completed, r.failed, r.lost, r.duplicated)
			total.add(r)
			if r.lost != 0 || r.duplicated != 0 {
				t.Errorf("%d lost, %d duplicated: %v", r.lost, r.duplicated, r.problems)
			}
		})
	}
	fmt.Printf("chaos: %d submitted, %d completed, %d failed, %d lost, %d duplicated\n",
		total.submitted, total.completed, total.failed, total.lost, total.duplicated)
}

func (r *chaosResult) add(o *chaosResult) {
	r.submitted += o.submitted
	r.completed += o.completed
	r.failed += o.failed
	r.lost += o.lost
	r.duplicated += o.duplicated
}

type chaosResult struct {
	submitted, completed, failed, lost, duplicated int
	problems                                       []string
}

func (r *chaosResult) problem(dup bool, format string, args ...any) {
	if dup {
		r.duplicated++
	} else {
		r.lost++
	}
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cluster is the processes of one chaos run, restartable.
type cluster struct {
	t         *testing.T
	url, addr string
	mu        sync.Mutex
	edge      *process
	interiors []*process
}

func (c *cluster) startEdge() *process {
	return spawn(c.t, "serve", "--role", "edge", "--addr", c.addr, "--database", c.url, "--log-level", "error", "--db-pool", "8")
}

func (c *cluster) startInterior() *process {
	return spawn(c.t, "serve", "--role", "interior", "--addr", "127.0.0.1:0", "--database", c.url, "--log-level", "error", "--db-pool", "8",
		"--payment-decline-rate", "0.1", "--payment-transient-rate", "0.2", "--payment-latency", "2ms", "--payment-max-tries", "8")
}

func runChaos(t *testing.T, url string, drafts, kills, teams int) *chaosResult {
	if out, err := execMigrate(t, url); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	c := &cluster{t: t, url: url, addr: freeAddr(t)}
	c.edge = c.startEdge()
	c.interiors = []*process{c.startInterior(), c.startInterior()}
	base := "http://" + c.addr

	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var seqErrs atomic.Int64
	var wg sync.WaitGroup
	submitted := make(chan string, drafts)
	next := atomic.Int64{}
	for i := 0; i < teams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			chaosTeam(ctx, t, base, i, drafts, &next, submitted, &seqErrs)
		}(i)
	}
	// The killer, beside the members: an interior every 200 ms, the edge
	// once half-way. It runs its course even if the submits end first.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for n := 0; n < kills; n++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if n == kills/2 {
				c.edge.kill()
				c.edge = c.startEdge()
			}
			i := rand.IntN(len(c.interiors))
			c.interiors[i].kill()
			c.interiors[i] = c.startInterior()
		}
	}()
	wg.Wait()
	<-killed
	t.Logf("submits and %d interior kills done after %v", kills, time.Since(started).Round(time.Millisecond))
	close(submitted)
	var ops []string
	for id := range submitted {
		ops = append(ops, id)
	}
	res := checkChaos(ctx, t, url, base, ops, seqErrs.Load())
	t.Logf("all operations ended after %v", time.Since(started).Round(time.Millisecond))
	return res
}

func execMigrate(t *testing.T, url string) ([]byte, error) {
	return commandOutput(binary(t), "migrate", "--database", url)
}

// chaosTeam has two members edit and submit drafts until the shared
// counter reaches the total, each draft submitted twice at once.
func chaosTeam(ctx context.Context, t *testing.T, base string, team, total int, counter *atomic.Int64, submitted chan<- string, seqErrs *atomic.Int64) {
	alice, bob := client.New(base), client.New(base)
	var s client.Session
	if err := retrying(ctx, func() (err error) { s, err = alice.CreateTeam(ctx, "Chaos "+strconv.Itoa(team), "Alice"); return }); err != nil {
		t.Errorf("team %d: %v", team, err)
		return
	}
	if err := retrying(ctx, func() error { _, err := bob.Join(ctx, s.InviteToken, "Bob"); return err }); err != nil {
		t.Errorf("team %d join: %v", team, err)
		return
	}
	watcher := watchSeq(ctx, bob, seqErrs)
	defer watcher()
	cat := catalog.Default()
	for counter.Add(1) <= int64(total) {
		var d client.Draft
		if err := retrying(ctx, func() (err error) { d, err = alice.CreateDraft(ctx, "Order"); return }); err != nil {
			t.Errorf("team %d: %v", team, err)
			return
		}
		lines := 1 + rand.IntN(3)
		for i := 0; i < lines; i++ {
			p := cat.Products[rand.IntN(len(cat.Products))]
			op := client.AddItem(uuid.NewString(), p.SKU, 1+rand.IntN(3), "")
			if err := applyOp(ctx, alice, d.ID, uuid.NewString(), op); err != nil {
				t.Errorf("team %d op: %v", team, err)
				return
			}
		}
		// Both press submit at once; then one retries as after a timeout.
		var wg sync.WaitGroup
		ids := make([]string, 2)
		for i, m := range []*client.Client{alice, bob} {
			wg.Add(1)
			go func(i int, m *client.Client) {
				defer wg.Done()
				_ = retrying(ctx, func() error {
					op, _, err := m.Submit(ctx, d.ID, int64(lines))
					ids[i] = op.ID
					return err
				})
			}(i, m)
		}
		wg.Wait()
		var again client.Operation
		_ = retrying(ctx, func() (err error) { again, _, err = bob.Submit(ctx, d.ID, int64(lines)); return })
		if ids[0] == "" || ids[0] != ids[1] || ids[0] != again.ID {
			t.Errorf("draft %s: duplicate submits answered %v and %s", d.ID, ids, again.ID)
		}
		submitted <- ids[0]
	}
}

// applyOp sends an op until its applied copy arrives, reconnecting and
// resending with the same client_op_id when the edge goes away.
func applyOp(ctx context.Context, c *client.Client, draftID, clientOpID string, op any) error {
	return retrying(ctx, func() error {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ws, err := c.Dial(octx)
		if err != nil {
			return err
		}
		defer ws.Close()
		d, err := ws.Subscribe(octx, draftID)
		if err != nil {
			return err
		}
		if err := ws.Op(octx, draftID, clientOpID, d.Revision, op); err != nil {
			return err
		}
		for {
			m, err := ws.Read(octx)
			if err != nil {
				return err
			}
			if m.Type == "applied" && m.ClientOpID == clientOpID {
				return nil
			}
			if m.Type == "rejected" && m.ClientOpID == clientOpID {
				return permanent{fmt.Errorf("rejected: %s", m.Error.Message)}
			}
		}
	})
}

// watchSeq keeps a socket open (reconnecting) and counts operation
// messages whose seq went below one seen before for that operation.
func watchSeq(ctx context.Context, c *client.Client, seqErrs *atomic.Int64) func() {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := map[string]int64{}
		for wctx.Err() == nil {
			ws, err := c.Dial(wctx)
			if err != nil {
				select {
				case <-wctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for {
				m, err := ws.Read(wctx)
				if err != nil {
					break
				}
				if m.Type == "operation" {
					if m.Operation.Seq < seen[m.Operation.ID] {
						seqErrs.Add(1)
					}
					seen[m.Operation.ID] = max(seen[m.Operation.ID], m.Operation.Seq)
				}
			}
			ws.WS.CloseNow()
		}
	}()
	return func() { cancel(); <-done }
}

// retrying runs fn until it succeeds, fails permanently or ctx ends,
// pausing between tries: the edge may be down for a restart.
func retrying(ctx context.Context, fn func() error) error {
	pause := 50 * time.Millisecond
	for {
		err := fn()
		var perm permanent
		var apiErr *client.APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return perm.err
		case errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != 429:
			return err
		case ctx.Err() != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

// checkChaos waits for every operation to end, then checks the books.
func checkChaos(ctx context.Context, t *testing.T, url, base string, ops []string, seqErrs int64) *chaosResult {
	r := &chaosResult{submitted: len(ops)}
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var open int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM operations WHERE status IN ('pending', 'processing')`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	q := func(query string, args ...any) int {
		var n int
		if err := db.QueryRowContext(ctx, db.Q(query), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	if n := q(`SELECT count(*) FROM operations`); n != len(ops) {
		r.problem(n > len(ops), "%d operations for %d submitted drafts", n, len(ops))
	}
	for _, id := range ops {
		var st string
		if err := db.QueryRowContext(ctx, db.Q(`SELECT status FROM operations WHERE id = $1`), id).Scan(&st); err != nil {
			r.problem(false, "operation %s: %v", id, err)
			continue
		}
		orders := q(`SELECT count(*) FROM orders WHERE operation_id = $1`, id)
		charges := q(`SELECT count(DISTINCT c.idempotency_key) FROM payments p JOIN sim_charges c ON c.idempotency_key = p.idempotency_key WHERE p.operation_id = $1`, id)
		switch st {
		case "completed":
			r.completed++
			if orders != 1 || charges != 1 {
				r.problem(orders > 1 || charges > 1, "completed %s: %d orders, %d charges", id, orders, charges)
			}
		case "failed":
			r.failed++
			if orders != 0 || charges != 0 {
				r.problem(true, "failed %s: %d orders, %d charges", id, orders, charges)
			}
			if n := q(`SELECT count(*) FROM reservations WHERE operation_id = $1 AND state <> 'released'`, id); n != 0 {
				r.problem(true, "failed %s keeps %d reservations", id, n)
			}
		default:
			var steps string
			_ = db.QueryRowContext(ctx, db.Q(`SELECT steps FROM operations WHERE id = $1`), id).Scan(&steps)
			r.problem(false, "operation %s stuck in %s: %s", id, st, steps)
		}
	}
	if n := q(`SELECT count(*) FROM sim_charges`); n != r.completed {
		r.problem(n > r.completed, "%d charges at the provider for %d completed orders", n, r.completed)
	}
	checkStock(ctx, t, db, r)
	reasons, err := db.QueryContext(ctx, `SELECT error, count(*) FROM operations WHERE status = 'failed' GROUP BY error`)
	if err == nil {
		byCode := map[string]int{}
		for reasons.Next() {
			var raw string
			var n int
			if reasons.Scan(&raw, &n) == nil {
				var e struct{ Code string }
				_ = json.Unmarshal([]byte(raw), &e)
				byCode[e.Code] += n
			}
		}
		reasons.Close()
		t.Logf("failures by reason: %v", byCode)
		if byCode["step_failed"] > 0 {
			var msg string
			_ = db.QueryRowContext(ctx, `SELECT error FROM operations WHERE status = 'failed' AND error LIKE '%step_failed%' LIMIT 1`).Scan(&msg)
			r.problem(false, "%d operations failed because a step gave up, such as: %s", byCode["step_failed"], msg)
		}
	}
	if seqErrs > 0 {
		r.problem(true, "%d operation messages went back in seq", seqErrs)
	}
	return r
}

// checkStock: each SKU's stock is its seed less what completed orders hold.
func checkStock(ctx context.Context, t *testing.T, db *sqldb.DB, r *chaosResult) {
	held := map[string]int64{}
	rows, err := db.QueryContext(ctx, `SELECT lines FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		for sku, n := range orderLines(t, raw) {
			held[sku] += n
		}
	}
	rows.Close()
	for _, p := range catalog.Default().Products {
		var left int64
		if err := db.QueryRowContext(ctx, db.Q(`SELECT available + COALESCE((SELECT sum(quantity) FROM stock_releases r WHERE r.sku = stock.sku), 0) FROM stock WHERE sku = $1`), p.SKU).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != p.Stock-held[p.SKU] {
			r.problem(left < p.Stock-held[p.SKU], "%s: %d in stock, want %d - %d", p.SKU, left, p.Stock, held[p.SKU])
		}
	}
}

// permanent is an error retrying does not retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

func commandOutput(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// orderLines sums an order's stored lines by SKU.
func orderLines(t *testing.T, raw string) map[string]int64 {
	var lines []struct {
		SKU      string `json:"sku"`
		Quantity int64  `json:"quantity"`
	}
	if err := json.Unmarshal([]byte(raw), &lines); err != nil {
		t.Fatalf("order lines %s: %v", raw, err)
	}
	out := map[string]int64{}
	for _, l := range lines {
		out[l.SKU] += l.Quantity
	}
	return out
}
