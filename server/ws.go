package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Socket limits.
const (
	maxFrame     = 64 << 10
	writeTimeout = 5 * time.Second
	pingInterval = 20 * time.Second
	pingTimeout  = 10 * time.Second
)

// clientMsg is any frame a client sends.
type clientMsg struct {
	Type         string          `json:"type"`
	DraftID      string          `json:"draft_id"`
	ClientOpID   string          `json:"client_op_id"`
	BaseRevision *int64          `json:"base_revision"`
	Op           json.RawMessage `json:"op"`
	Focus        *string         `json:"focus" null:"ok"`
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	p, err := s.principalOf(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.writeError(w, r, errorf(CodeBadRequest, "This endpoint takes WebSocket connections only."))
		return
	}
	// Accept checks the origin's host too; this adds the scheme and the
	// contract's error body.
	if !sameOriginRequest(r) {
		s.writeError(w, r, foreignOrigin(r))
		return
	}
	ws, err := websocket.Accept(leanHijacker{w}, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(maxFrame)
	c := &conn{ws: ws, p: p, ctx: s.baseCtx, maxQueue: s.cfg.SocketQueue, done: make(chan struct{}), drafts: map[string]*subscription{}}
	hello := mustJSON(map[string]any{"type": "hello", "member": p.Member, "team": p.Team})
	if !s.hub.add(c, hello) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	// The socket lives on its own goroutine so that this one, with the
	// deep stack, the request and the buffers net/http keeps for it, ends
	// now: an idle socket then holds one small goroutine, its buffers and
	// a timer. r.Context() is not to be used after the upgrade; the
	// socket lives on the server's context.
	go s.serveSocket(c)
}

func (s *Server) serveSocket(c *conn) {
	defer c.ws.CloseNow()
	defer func() {
		for _, id := range s.hub.remove(c) {
			s.presenceChanged(id)
		}
	}()
	c.mu.Lock()
	c.ping = time.AfterFunc(pingInterval, c.keepAlive)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ping.Stop()
		c.ping = nil // keepAlive re-arms only a live socket's timer
		c.mu.Unlock()
	}()
	s.readLoop(c.ctx, c)
	c.kill(websocket.StatusNormalClosure, "")
}

// ping checks that the client still reads; it runs on the timer's
// goroutine, so an idle socket needs no goroutine of its own for it.
func (c *conn) keepAlive() {
	ctx, cancel := context.WithTimeout(c.ctx, pingTimeout)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		c.kill(websocket.StatusPolicyViolation, "no answer to ping")
		return
	}
	c.mu.Lock()
	if c.ping != nil && !c.closed() {
		c.ping.Reset(pingInterval)
	}
	c.mu.Unlock()
}

// drain writes the socket's queue in order until it is empty. At most one
// drain runs per socket (conn.writing), started by the enqueue that found
// the queue idle, so a socket with nothing to send has no writer.
func (c *conn) drain() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.closed() {
			c.queue, c.writing = nil, false
			c.mu.Unlock()
			return
		}
		msg := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, msg)
		cancel()
		if err != nil {
			c.kill(websocket.StatusPolicyViolation, "write timed out")
			return
		}
	}
}

// Socket buffer sizes. Clients send small frames and large ones bypass a
// buffer; most server messages fit the write buffer whole.
const (
	socketReadBuffer  = 1 << 10
	socketWriteBuffer = 2 << 10
)

// leanHijacker gives the socket smaller buffers than the 4 KiB each that
// net/http hands over with a hijacked connection; at ten thousand idle
// sockets that is 50 MiB. A client that sent bytes ahead of the handshake
// keeps net/http's reader, which holds them.
type leanHijacker struct{ http.ResponseWriter }

func (l leanHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(l.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	r := bufio.NewReaderSize(nc, socketReadBuffer)
	if brw.Reader.Buffered() > 0 {
		r = brw.Reader
	}
	lc := lingeringConn{nc}
	return lc, bufio.NewReadWriter(r, bufio.NewWriterSize(lc, socketWriteBuffer)), nil
}

// lingerTimeout bounds how long a closing socket keeps reading what its
// client still sends.
const lingerTimeout = 500 * time.Millisecond

// lingeringConn closes gently: it sends its end of the stream, then reads
// and drops what the client still has in flight (the rest of an oversized
// frame, typically) before it closes. Closed with unread bytes, the kernel
// would reset the connection, and the client could lose the close frame
// that says why (1009, 1008) along with them.
type lingeringConn struct{ net.Conn }

func (c lingeringConn) Close() error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		if tc.CloseWrite() == nil && tc.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(tc, maxFrame))
		}
	}
	return c.Conn.Close()
}

func (s *Server) readLoop(ctx context.Context, c *conn) {
	rate, burst := float64(s.cfg.FrameRate), float64(2*s.cfg.FrameRate)
	tokens, last := burst, time.Now()
	var lastRefusal time.Time
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		tokens = min(burst, tokens+now.Sub(last).Seconds()*rate)
		last = now
		var m clientMsg
		var bad []byte
		if typ != websocket.MessageText || !utf8.Valid(data) {
			bad = errorMsg(errorf(CodeBadRequest, "Frames must be UTF-8 text, one JSON object each."))
		} else if err := decodeBytes(data, &m); err != nil {
			bad = frameError(data, err)
		}
		if bad != nil {
			// Frames that cannot be read count against the rate too; past it
			// they share the one error a second.
			if tokens >= 1 {
				tokens--
				c.enqueue(bad)
			} else if op, ok := looseOp(data); ok {
				c.enqueue(rejectedMsg(op, rateLimited())) // every op is answered
			} else if now.Sub(lastRefusal) >= time.Second {
				lastRefusal = now
				c.enqueue(errorMsg(rateLimited()))
			}
			continue
		}
		if tokens < 1 {
			// Ops are each answered, so the sender knows which to resend;
			// other frames past the rate get one error a second, so a flood
			// cannot fill the socket's own queue.
			if m.Type == "op" {
				c.enqueue(rejectedMsg(&m, rateLimited()))
			} else if now.Sub(lastRefusal) >= time.Second {
				lastRefusal = now
				c.enqueue(errorMsg(rateLimited()))
			}
			continue
		}
		tokens--
		s.handleFrame(ctx, c, &m)
	}
}

func rateLimited() *Error {
	return &Error{Code: CodeRateLimited, Message: "Too many messages; slow down.", Extra: map[string]any{"retry_after": 1}}
}

// frameError answers a frame that failed to decode: an op whose
// client_op_id can still be read is rejected under that id, so its sender
// can match the answer; anything else gets an error.
func frameError(data []byte, err error) []byte {
	if op, ok := looseOp(data); ok {
		return rejectedMsg(op, err)
	}
	return errorMsg(err)
}

// looseOp reads the draft and client_op_id of a frame that failed to
// decode, when it is an op that names its client_op_id.
func looseOp(data []byte) (*clientMsg, bool) {
	var loose struct {
		Type       string `json:"type"`
		DraftID    string `json:"draft_id"`
		ClientOpID string `json:"client_op_id"`
	}
	_ = json.Unmarshal(data, &loose) // best effort: a type error elsewhere still fills these
	if loose.Type != "op" || loose.ClientOpID == "" {
		return nil, false
	}
	return &clientMsg{DraftID: loose.DraftID, ClientOpID: loose.ClientOpID}, true
}

func errorMsg(err error) []byte {
	e := asError(err)
	return mustJSON(map[string]any{"type": "error", "error": e.body()["error"]})
}

// draftErrorMsg is an error about a draft; draft_id (an extension of the
// contract) lets a client tell which of its subscriptions failed.
func draftErrorMsg(draftID string, err error) []byte {
	e := asError(err)
	return mustJSON(map[string]any{"type": "error", "draft_id": draftID, "error": e.body()["error"]})
}

func rejectedMsg(m *clientMsg, err error) []byte {
	e := asError(err)
	return mustJSON(map[string]any{"type": "rejected", "draft_id": m.DraftID, "client_op_id": m.ClientOpID, "error": e.body()["error"]})
}

func (s *Server) handleFrame(ctx context.Context, c *conn, m *clientMsg) {
	switch m.Type {
	case "subscribe":
		if err := s.subscribe(ctx, c, m.DraftID); err != nil {
			c.enqueue(draftErrorMsg(m.DraftID, err))
		}
	case "unsubscribe":
		if s.hub.unsubscribe(c, m.DraftID) {
			s.presenceChanged(m.DraftID)
		}
	case "op":
		s.handleOp(ctx, c, m)
	case "presence":
		if m.Focus != nil && len(*m.Focus) > 200 {
			c.enqueue(errorMsg(invalid("focus", "The focus is too long.")))
			return
		}
		if !s.hub.setFocus(c, m.DraftID, m.Focus) {
			c.enqueue(draftErrorMsg(m.DraftID, errorf(CodeNotFound, "Subscribe to the draft before sending presence.")))
			return
		}
		s.presenceChanged(m.DraftID)
	case "":
		c.enqueue(errorMsg(errorf(CodeBadRequest, "The message has no type.")))
	default:
		c.enqueue(errorMsg(errorf(CodeBadRequest, "Unknown message type %q.", m.Type)))
	}
}

func (s *Server) subscribe(ctx context.Context, c *conn, draftID string) error {
	// Under the delivery lock no applied op of the draft is pushed between
	// reading the snapshot and registering the subscriber.
	unlock := s.delivery.lock(draftID)
	d, err := s.loadDraft(ctx, s.db, c.p.Team.ID, draftID, false)
	if err != nil {
		unlock()
		if errors.Is(err, errNotFound) {
			return errorf(CodeNotFound, "There is no such draft.")
		}
		return err
	}
	s.hub.subscribe(c, d.ID, d.Revision, snapshotMsg(d))
	unlock()
	s.presenceChanged(d.ID)
	return nil
}

func (s *Server) handleOp(ctx context.Context, c *conn, m *clientMsg) {
	if m.ClientOpID == "" || len(m.ClientOpID) > 100 || strings.TrimSpace(m.ClientOpID) != m.ClientOpID {
		c.enqueue(rejectedMsg(m, invalid("client_op_id", "An op needs a client_op_id of 1 to 100 characters.")))
		return
	}
	if len(m.Op) == 0 {
		c.enqueue(rejectedMsg(m, errorf(CodeBadRequest, "The op is missing.")))
		return
	}
	var op Op
	if err := decodeBytes(m.Op, &op); err != nil {
		c.enqueue(rejectedMsg(m, err))
		return
	}
	applied, dup, err := s.applyOp(ctx, c.p, m.DraftID, m.ClientOpID, &op)
	if err != nil {
		c.enqueue(rejectedMsg(m, err))
		return
	}
	if dup || !s.hub.subscribed(c, m.DraftID) {
		// A resend: the sender gets the same answer again, nobody else
		// hears. A sender not subscribed still gets its acknowledgement.
		c.enqueue(mustJSON(applied))
	}
}
