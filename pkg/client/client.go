// Package client speaks handoff's wire contract (HTTP and WebSocket) from
// Go: for integration tests, the load generator and scripts. It is written
// from the contract alone and imports nothing of the server.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Client is one browser: a base URL and a cookie jar.
type Client struct {
	Base string
	HTTP *http.Client
}

// New returns a client of the server at base (http://host:port).
func New(base string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Code    string
	Message string
	Body    map[string]any
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Do sends in as JSON (nil for no body) and decodes a 2xx answer into out
// (nil to drop it). It returns the status code.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		buf, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(raw, &e.Body) == nil {
			if inner, ok := e.Body["error"].(map[string]any); ok {
				e.Code, _ = inner["code"].(string)
				e.Message, _ = inner["message"].(string)
			}
		}
		return resp.StatusCode, e
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Team is a team on the wire.
type Team struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Member is a member on the wire.
type Member struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

// Session is the answer to creating, joining or GET /api/me.
type Session struct {
	Team        Team   `json:"team"`
	Member      Member `json:"member"`
	InviteToken string `json:"invite_token"`
}

// Item is a line of a draft.
type Item struct {
	ID       string `json:"id"`
	SKU      string `json:"sku"`
	Name     string `json:"name"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note"`
}

// Draft is a draft on the wire.
type Draft struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	Revision   int64  `json:"revision"`
	State      string `json:"state"`
	Items      []Item `json:"items"`
	Submission *struct {
		OperationID string `json:"operation_id"`
		MessageID   string `json:"message_id"`
		Revision    int64  `json:"revision"`
	} `json:"submission"`
}

// Step is a step of an operation.
type Step struct {
	Name     string  `json:"name"`
	Status   string  `json:"status"`
	Attempts int     `json:"attempts"`
	Error    *string `json:"error"`
}

// Operation is an operation on the wire.
type Operation struct {
	ID        string `json:"id"`
	DraftID   string `json:"draft_id"`
	MessageID string `json:"message_id"`
	Revision  int64  `json:"revision"`
	Status    string `json:"status"`
	Steps     []Step `json:"steps"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result    map[string]any `json:"result"`
	Seq       int64          `json:"seq"`
	Retryable bool           `json:"retryable"`
}

// CreateTeam signs up a new team with this client as its first member.
func (c *Client) CreateTeam(ctx context.Context, name, displayName string) (Session, error) {
	var s Session
	_, err := c.Do(ctx, "POST", "/api/teams", map[string]string{"name": name, "display_name": displayName}, &s)
	return s, err
}

// Join joins the team of an invite token.
func (c *Client) Join(ctx context.Context, token, displayName string) (Session, error) {
	var s Session
	_, err := c.Do(ctx, "POST", "/api/join", map[string]string{"invite_token": token, "display_name": displayName}, &s)
	return s, err
}

// CreateDraft creates a draft.
func (c *Client) CreateDraft(ctx context.Context, title string) (Draft, error) {
	var d Draft
	_, err := c.Do(ctx, "POST", "/api/drafts", map[string]string{"title": title}, &d)
	return d, err
}

// Draft reads a draft.
func (c *Client) Draft(ctx context.Context, id string) (Draft, error) {
	var d Draft
	_, err := c.Do(ctx, "GET", "/api/drafts/"+id, nil, &d)
	return d, err
}

// Submit submits a draft at a revision; created is true for 202.
func (c *Client) Submit(ctx context.Context, draftID string, revision int64) (op Operation, created bool, err error) {
	var out struct {
		Operation Operation `json:"operation"`
	}
	status, err := c.Do(ctx, "POST", "/api/drafts/"+draftID+"/submit", map[string]int64{"revision": revision}, &out)
	return out.Operation, status == http.StatusAccepted, err
}

// Operations lists the team's operations, newest first.
func (c *Client) Operations(ctx context.Context) ([]Operation, error) {
	var out struct {
		Operations []Operation `json:"operations"`
	}
	_, err := c.Do(ctx, "GET", "/api/operations", nil, &out)
	return out.Operations, err
}

// Socket is a client's WebSocket.
type Socket struct {
	WS    *websocket.Conn
	Hello Message
}

// Message is any server-to-client message; fields not in its type are zero.
type Message struct {
	Type       string          `json:"type"`
	DraftID    string          `json:"draft_id"`
	Revision   int64           `json:"revision"`
	ClientOpID string          `json:"client_op_id"`
	Author     *Member         `json:"author"`
	Op         json.RawMessage `json:"op"`
	Draft      *Draft          `json:"draft"`
	Operation  *Operation      `json:"operation"`
	Members    []struct {
		ID          string  `json:"id"`
		DisplayName string  `json:"display_name"`
		Focus       *string `json:"focus"`
	} `json:"members"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Team   *Team   `json:"team"`
	Member *Member `json:"member"`
}

// Dial opens the client's socket and reads the hello.
func (c *Client) Dial(ctx context.Context) (*Socket, error) {
	url := "ws" + strings.TrimPrefix(c.Base, "http") + "/api/ws"
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: c.HTTP})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(1 << 20)
	s := &Socket{WS: ws}
	if s.Hello, err = s.Read(ctx); err != nil {
		ws.CloseNow()
		return nil, err
	}
	if s.Hello.Type != "hello" {
		ws.CloseNow()
		return nil, fmt.Errorf("first message is %q, not hello", s.Hello.Type)
	}
	return s, nil
}

// Send writes one JSON message.
func (s *Socket) Send(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.WS.Write(ctx, websocket.MessageText, data)
}

// Read reads one message.
func (s *Socket) Read(ctx context.Context) (Message, error) {
	var m Message
	_, data, err := s.WS.Read(ctx)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", data, err)
	}
	return m, nil
}

// Next reads until a message of the type arrives.
func (s *Socket) Next(ctx context.Context, typ string) (Message, error) {
	for {
		m, err := s.Read(ctx)
		if err != nil || m.Type == typ {
			return m, err
		}
	}
}

// Subscribe subscribes to a draft and returns its snapshot.
func (s *Socket) Subscribe(ctx context.Context, draftID string) (Draft, error) {
	if err := s.Send(ctx, map[string]string{"type": "subscribe", "draft_id": draftID}); err != nil {
		return Draft{}, err
	}
	m, err := s.Next(ctx, "snapshot")
	if err != nil {
		return Draft{}, err
	}
	return *m.Draft, nil
}

// Op sends an op.
func (s *Socket) Op(ctx context.Context, draftID, clientOpID string, base int64, op any) error {
	return s.Send(ctx, map[string]any{"type": "op", "draft_id": draftID, "client_op_id": clientOpID, "base_revision": base, "op": op})
}

// AddItem is an add_item op.
func AddItem(id, sku string, quantity int, note string) map[string]any {
	return map[string]any{"kind": "add_item", "item": map[string]any{"id": id, "sku": sku, "quantity": quantity, "note": note}}
}

// Close closes the socket normally.
func (s *Socket) Close() error { return s.WS.Close(websocket.StatusNormalClosure, "") }
