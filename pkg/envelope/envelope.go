// Package envelope is the contract on the bus between the edge and the
// interior: topics, event types, payloads, deterministic message ids and the
// conversion to and from Watermill messages.
package envelope

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// Topics on the bus.
const (
	// TopicOrderSubmitted carries OrderSubmitted from the submit boundary.
	TopicOrderSubmitted = "order.submitted"
	// TopicOrderPriced carries OrderPriced from validation to the stock
	// reservation.
	TopicOrderPriced = "order.priced"
	// TopicOrderReserved carries OrderPriced once its stock is reserved.
	TopicOrderReserved = "order.reserved"
	// TopicOrderPaid carries OrderPaid from the payment to the confirmation.
	TopicOrderPaid = "order.paid"
	// TopicOperationStatus carries StatusChanged from the interior to the edge.
	TopicOperationStatus = "operation.status"
)

// Topics lists every topic, so each process can create them at start.
var Topics = []string{TopicOrderSubmitted, TopicOrderPriced, TopicOrderReserved, TopicOrderPaid, TopicOperationStatus}

// Metadata keys set on every message.
const (
	// MetaOperationID is the operation a message belongs to; it doubles as
	// the correlation id in logs.
	MetaOperationID = "operation_id"
	// MetaType names the payload type.
	MetaType = "type"
	// MetaAttempt numbers manual retries of a failed operation (0 for the first run).
	MetaAttempt = "attempt"
)

// Payload types, the value of MetaType.
const (
	TypeOrderSubmitted = "order_submitted"
	TypeOrderPriced    = "order_priced"
	TypeOrderPaid      = "order_paid"
	TypeStatusChanged  = "status_changed"
)

// Step names, in workflow order. They are shown to members as they are.
const (
	StepValidate = "Validate and price"
	StepReserve  = "Reserve stock"
	StepPayment  = "Take payment"
	StepConfirm  = "Confirm order"
)

// Steps lists the workflow's steps in order.
var Steps = []string{StepValidate, StepReserve, StepPayment, StepConfirm}

// Line is one line of an order as submitted.
type Line struct {
	ItemID   string `json:"item_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note"`
}

// OrderSubmitted is the message the boundary writes when a draft is submitted.
type OrderSubmitted struct {
	OperationID string `json:"operation_id"`
	DraftID     string `json:"draft_id"`
	TeamID      string `json:"team_id"`
	Revision    int64  `json:"revision"`
	Title       string `json:"title"`
	Lines       []Line `json:"lines"`
}

// PricedLine is a validated line with its catalog price.
type PricedLine struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineCents      int64  `json:"line_cents"`
}

// OrderPriced is the validated, priced order.
type OrderPriced struct {
	OperationID string       `json:"operation_id"`
	DraftID     string       `json:"draft_id"`
	TeamID      string       `json:"team_id"`
	Revision    int64        `json:"revision"`
	Lines       []PricedLine `json:"lines"`
	TotalCents  int64        `json:"total_cents"`
	Currency    string       `json:"currency"`
}

// Step and operation states as they appear in StatusChanged.
const (
	StepWaiting = "waiting"
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
	StepSkipped = "skipped"

	OpPending    = "pending"
	OpProcessing = "processing"
	OpCompleted  = "completed"
	OpFailed     = "failed"
)

// Error is a failure reason meant for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Retryable marks a failure of circumstance (a provider that stayed
	// unavailable), which the same order may overcome when tried again.
	Retryable bool `json:"retryable,omitempty"`
}

// OrderPaid is a priced, reserved order whose payment went through.
type OrderPaid struct {
	OrderPriced
	ChargeID string `json:"charge_id"`
}

// Result is what a completed order workflow produced.
type Result struct {
	OrderNumber string `json:"order_number"`
	TotalCents  int64  `json:"total_cents"`
	Currency    string `json:"currency"`
}

// StatusChanged reports one change of an operation: a step's state, and when
// the workflow ends, the operation's outcome.
type StatusChanged struct {
	OperationID string `json:"operation_id"`
	// Attempt is the run of the operation this change belongs to (0 for the
	// first, then one more per manual retry); changes of older runs are
	// ignored.
	Attempt    int    `json:"attempt"`
	Step       string `json:"step"`
	StepStatus string `json:"step_status"`
	Attempts   int    `json:"attempts"`
	StepError  string `json:"step_error,omitempty"`
	// Outcome is empty while the workflow goes on, else OpCompleted or OpFailed.
	Outcome string  `json:"outcome,omitempty"`
	Result  *Result `json:"result,omitempty"`
	Error   *Error  `json:"error,omitempty"`
	// At is when the change happened, RFC 3339 with milliseconds.
	At string `json:"at"`
}

// namespace roots every derived id, so ids from this product never collide
// with UUIDv5s of other namespaces.
var namespace = uuid.MustParse("8b0e4d42-3c1e-5a0e-9f7a-6a1d2c0b4e11")

// AttemptOf reads a message's run number (MetaAttempt), 0 when absent.
func AttemptOf(msg *message.Message) int {
	n, _ := strconv.Atoi(msg.Metadata.Get(MetaAttempt))
	return n
}

// RetryID is the message id of the n-th manual retry of a submission.
func RetryID(submitID string, n int) string {
	return DeriveID(submitID, "retry", strconv.Itoa(n))
}

// SubmitID is the message id of a draft's submission at a revision: every
// duplicate of that submit carries the same id.
func SubmitID(draftID string, revision int64) string {
	return uuid.NewSHA1(namespace, []byte("submit\x00"+draftID+"\x00"+strconv.FormatInt(revision, 10))).String()
}

// DeriveID is the id of a handler's output derived from the incoming message
// id, the handler and the output's name, so a re-run step produces the same
// ids and the next hop recognises the duplicate.
func DeriveID(incomingID, handler, output string) string {
	return uuid.NewSHA1(namespace, []byte(incomingID+"\x00"+handler+"\x00"+output)).String()
}

// New builds a Watermill message with the given id, type, operation and
// JSON payload.
func New(id, typ, operationID string, payload any) (*message.Message, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", typ, err)
	}
	msg := message.NewMessage(id, body)
	msg.Metadata.Set(MetaType, typ)
	msg.Metadata.Set(MetaOperationID, operationID)
	return msg, nil
}

// Decode unmarshals a message's payload into v after checking its type. An
// error here is permanent: retrying cannot fix a malformed message.
func Decode(msg *message.Message, typ string, v any) error {
	if got := msg.Metadata.Get(MetaType); got != typ {
		return fmt.Errorf("message %s: type %q, want %q: %w", msg.UUID, got, typ, ErrMalformed)
	}
	if err := json.Unmarshal(msg.Payload, v); err != nil {
		return fmt.Errorf("message %s: decode %s: %v: %w", msg.UUID, typ, err, ErrMalformed)
	}
	return nil
}

// ErrMalformed marks a message that cannot be decoded; it is poison.
var ErrMalformed = errMalformed{}

type errMalformed struct{}

func (errMalformed) Error() string { return "malformed message" }
