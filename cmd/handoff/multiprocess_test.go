package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"handoff/pkg/client"
	"handoff/pkg/sqldb/sqldbtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds handoff once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "handoff-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "handoff")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is a handoff binary running as a child.
type process struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(t *testing.T, dbURL, role string, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--database", dbURL, "--role", role, "--log-level", "warn", "--db-pool", "8"}, extra...)
	return spawn(t, args...)
}

// spawn starts the binary with args and waits until it says it runs; the
// test's cleanup stops it.
func spawn(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if m := urlLine.FindStringSubmatch(lines.Text()); m != nil {
			p.URL = m[1]
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if p.URL == "" {
		t.Fatalf("process %v did not start", args)
	}
	return p
}

// stop asks the process to shut down and waits for it.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	<-p.done
}

// kill ends the process at once, as a crash would.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// seen is what one socket saw of a draft: revision and client_op_id.
type seen []string

func watch(ctx context.Context, ws *client.Socket, draftID string, upTo int64) (seen, error) {
	var out seen
	for int64(len(out)) < upTo {
		m, err := ws.Next(ctx, "applied")
		if err != nil {
			return out, err
		}
		if m.DraftID == draftID {
			out = append(out, fmt.Sprintf("%d:%s", m.Revision, m.ClientOpID))
		}
	}
	return out, nil
}

// Two edges and two interiors on one PostgreSQL database: members on
// different edges co-edit and submit 50 drafts; everyone sees the same
// revisions and every operation completes once.
func TestSeveralProcessesShareOneDatabase(t *testing.T) {
	dbURL := sqldbtest.PostgresURL(t)
	edges := []*process{startProcess(t, dbURL, "edge"), startProcess(t, dbURL, "edge")}
	startProcess(t, dbURL, "interior")
	startProcess(t, dbURL, "interior")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const teams, draftsPerTeam = 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, teams)
	opIDs := make(chan string, teams*draftsPerTeam)
	for i := 0; i < teams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := coEditTeam(ctx, edges[0].URL, edges[1].URL, i, draftsPerTeam, opIDs); err != nil {
				errs <- fmt.Errorf("team %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	close(opIDs)
	if t.Failed() {
		return
	}
	db := sqldbtest.MustOpen(t, dbURL)
	n := 0
	for id := range opIDs {
		n++
		var orders int
		if err := db.QueryRowContext(ctx, db.Q(`SELECT count(*) FROM orders WHERE operation_id = $1`), id).Scan(&orders); err != nil || orders != 1 {
			t.Errorf("operation %s has %d orders (%v), want 1", id, orders, err)
		}
	}
	if n != teams*draftsPerTeam {
		t.Fatalf("%d operations, want %d", n, teams*draftsPerTeam)
	}
	var total int
	db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&total)
	if total != n {
		t.Fatalf("%d orders for %d operations", total, n)
	}
}

// coEditTeam has Alice on one edge and Bob on the other edit and submit
// drafts together.
func coEditTeam(ctx context.Context, edgeA, edgeB string, team, drafts int, opIDs chan<- string) error {
	alice, bob := client.New(edgeA), client.New(edgeB)
	s, err := alice.CreateTeam(ctx, fmt.Sprintf("Team %d", team), "Alice")
	if err != nil {
		return err
	}
	if _, err := bob.Join(ctx, s.InviteToken, "Bob"); err != nil {
		return err
	}
	for i := 0; i < drafts; i++ {
		d, err := alice.CreateDraft(ctx, fmt.Sprintf("Draft %d", i))
		if err != nil {
			return err
		}
		wa, err := alice.Dial(ctx)
		if err != nil {
			return err
		}
		wb, err := bob.Dial(ctx)
		if err != nil {
			return err
		}
		if _, err := wa.Subscribe(ctx, d.ID); err != nil {
			return err
		}
		if _, err := wb.Subscribe(ctx, d.ID); err != nil {
			return err
		}
		// Both add at once, then both change the title at once.
		wa.Op(ctx, d.ID, "a-add", 0, client.AddItem(uuid.NewString(), "COF-ESP-1KG", 1, ""))
		wb.Op(ctx, d.ID, "b-add", 0, client.AddItem(uuid.NewString(), "TEA-GRN-100", 2, ""))
		wa.Op(ctx, d.ID, "a-title", 0, map[string]any{"kind": "set_title", "title": "Alice's"})
		wb.Op(ctx, d.ID, "b-title", 0, map[string]any{"kind": "set_title", "title": "Bob's"})
		sa, err := watch(ctx, wa, d.ID, 4)
		if err != nil {
			return fmt.Errorf("alice on draft %d: %w", i, err)
		}
		sb, err := watch(ctx, wb, d.ID, 4)
		if err != nil {
			return fmt.Errorf("bob on draft %d: %w", i, err)
		}
		if strings.Join(sa, ",") != strings.Join(sb, ",") {
			return fmt.Errorf("draft %d: alice saw %v, bob saw %v", i, sa, sb)
		}
		submitter, other := alice, wb
		if i%2 == 1 {
			submitter, other = bob, wa
		}
		op, _, err := submitter.Submit(ctx, d.ID, 4)
		if err != nil {
			return err
		}
		for {
			m, err := other.Next(ctx, "operation")
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", op.ID, err)
			}
			if m.Operation.ID == op.ID && m.Operation.Status == "completed" {
				break
			}
			if m.Operation.ID == op.ID && m.Operation.Status == "failed" {
				return fmt.Errorf("operation failed: %+v", m.Operation.Error)
			}
		}
		opIDs <- op.ID
		wa.Close()
		wb.Close()
	}
	return nil
}

// On SQLite the edge and the interior can run as two processes on one
// file.
func TestEdgeAndInteriorProcessesOnSQLite(t *testing.T) {
	dbURL := sqldbtest.SQLiteURL(t)
	// `handoff migrate` creates every table first.
	if out, err := exec.Command(binary(t), "migrate", "--database", dbURL).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	edge := startProcess(t, dbURL, "edge")
	startProcess(t, dbURL, "interior")
	ctx := ctxT(t)
	_, ws, op := submitOneItem(t, ctx, edge.URL)
	if got := waitOperation(t, ctx, ws, op.ID, "completed", "failed"); got.Status != "completed" {
		t.Fatalf("%+v", got)
	}
}
