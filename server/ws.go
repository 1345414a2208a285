package server

import (
	"context"
	"encoding/json"
	"errors"
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
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxFrame)
	c := &conn{ws: ws, p: p, send: make(chan []byte, s.cfg.SocketQueue), done: make(chan struct{}), drafts: map[string]*subscription{}}
	if !s.hub.add(c) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer func() {
		for _, id := range s.hub.remove(c) {
			s.presenceChanged(id)
		}
	}()
	// r.Context() is not to be used after the upgrade; the socket lives on
	// the server's context and ends with it or with the connection.
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	go s.writeLoop(ctx, c)
	c.enqueue(mustJSON(map[string]any{"type": "hello", "member": p.Member, "team": p.Team}))
	s.readLoop(ctx, c)
	c.kill(websocket.StatusNormalClosure, "")
}

func (s *Server) writeLoop(ctx context.Context, c *conn) {
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ctx.Done():
			c.kill(websocket.StatusGoingAway, "server shutting down")
			return
		case msg := <-c.send:
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.ws.Write(wctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				c.kill(websocket.StatusPolicyViolation, "write timed out")
				return
			}
		case <-ping.C:
			go func() {
				pctx, cancel := context.WithTimeout(ctx, pingTimeout)
				defer cancel()
				if err := c.ws.Ping(pctx); err != nil {
					c.kill(websocket.StatusPolicyViolation, "no answer to ping")
				}
			}()
		}
	}
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
		if typ != websocket.MessageText || !utf8.Valid(data) {
			c.enqueue(errorMsg(errorf(CodeBadRequest, "Frames must be UTF-8 text, one JSON object each.")))
			continue
		}
		var m clientMsg
		if err := decodeBytes(data, &m); err != nil {
			c.enqueue(frameError(data, err))
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
	var loose struct {
		Type       string `json:"type"`
		DraftID    string `json:"draft_id"`
		ClientOpID string `json:"client_op_id"`
	}
	_ = json.Unmarshal(data, &loose) // best effort: a type error elsewhere still fills these
	if loose.Type == "op" && loose.ClientOpID != "" {
		return rejectedMsg(&clientMsg{DraftID: loose.DraftID, ClientOpID: loose.ClientOpID}, err)
	}
	return errorMsg(err)
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
