package server

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"handoff/pkg/catalog"
)

// Limits of a draft, from the wire contract.
const (
	MaxTitle    = 200
	MaxItems    = 200
	MaxQuantity = 10000
	MaxNote     = 1000
	// MaxDraftBytes keeps a draft's snapshot inside one WebSocket frame
	// (64 KiB), with room for the envelope around it.
	MaxDraftBytes = 60 << 10
)

// Op kinds.
const (
	OpSetTitle   = "set_title"
	OpAddItem    = "add_item"
	OpUpdateItem = "update_item"
	OpRemoveItem = "remove_item"
)

// Op is one edit of a draft, as it travels on the wire.
type Op struct {
	Kind     string   `json:"kind"`
	Title    *string  `json:"title,omitempty"`
	Item     *OpItem  `json:"item,omitempty"`
	ItemID   string   `json:"item_id,omitempty"`
	Quantity *float64 `json:"quantity,omitempty"`
	Note     *string  `json:"note,omitempty"`
}

// OpItem is the item of an add_item op; its id is chosen by the client.
type OpItem struct {
	ID       string  `json:"id"`
	SKU      string  `json:"sku"`
	Quantity float64 `json:"quantity"`
	Note     string  `json:"note"`
}

// Item is a line of a draft.
type Item struct {
	ID       string `json:"id"`
	SKU      string `json:"sku"`
	Name     string `json:"name"`
	Quantity int    `json:"quantity"`
	Note     string `json:"note"`
}

// Draft states.
const (
	StateEditing   = "editing"
	StateSubmitted = "submitted"
)

// Draft is a team's shared data set with its items in order.
type Draft struct {
	ID       string
	TeamID   string
	Title    string
	Revision int64
	State    string
	Items    []Item
	// Submission is the current submission, if the draft was submitted.
	Submission *SubmissionRef
	CreatedAt  int64
	UpdatedAt  int64
}

// SubmissionRef points from a draft to its submission's operation.
type SubmissionRef struct {
	OperationID string `json:"operation_id"`
	MessageID   string `json:"message_id"`
	Revision    int64  `json:"revision"`
}

func (d *Draft) itemIndex(id string) int {
	for i := range d.Items {
		if d.Items[i].ID == id {
			return i
		}
	}
	return -1
}

// ApplyOp applies op to d in place, after checking every rule and limit of
// the contract; on error d is unchanged. The op is normalised (titles and
// notes trimmed of surrounding space where that matters) so the applied copy
// says exactly what changed.
func ApplyOp(d *Draft, op *Op, cat *catalog.Catalog) error {
	if d.State != StateEditing {
		return errorf(CodeDraftSubmitted, "This draft was submitted; it can no longer be edited.")
	}
	switch op.Kind {
	case OpSetTitle:
		return applySetTitle(d, op)
	case OpAddItem:
		return applyAddItem(d, op, cat)
	case OpUpdateItem:
		return applyUpdateItem(d, op)
	case OpRemoveItem:
		return applyRemoveItem(d, op)
	case "":
		return invalid("kind", "The op has no kind.")
	default:
		return invalid("kind", "Unknown op kind %q.", op.Kind)
	}
}

// checkGrowth refuses a change that would make the draft's snapshot too
// large for one frame; grow is the change in bytes.
func checkGrowth(d *Draft, grow int) error {
	if grow > 0 && draftBytes(d)+grow > MaxDraftBytes {
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("The draft would be larger than %d KiB, too large to share live; shorten its notes.", MaxDraftBytes>>10)}
	}
	return nil
}

// draftBytes bounds the size of a draft's snapshot from above: JSON's
// escapes are counted at their longest.
func draftBytes(d *Draft) int {
	n := 400 + jsonBytes(d.Title)
	for i := range d.Items {
		n += itemBytes(&d.Items[i])
	}
	return n
}

func itemBytes(it *Item) int {
	return 90 + len(it.ID) + len(it.SKU) + jsonBytes(it.Name) + jsonBytes(it.Note)
}

func jsonBytes(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '<', c == '>', c == '&':
			n += 6
		case c == '"', c == '\\':
			n += 2
		default:
			n++
		}
	}
	return n
}

func onlyFields(op *Op, title, item, itemID, qtyOrNote bool) error {
	if !title && op.Title != nil {
		return invalid("title", "A %s op has no title.", op.Kind)
	}
	if !item && op.Item != nil {
		return invalid("item", "A %s op has no item.", op.Kind)
	}
	if !itemID && op.ItemID != "" {
		return invalid("item_id", "A %s op has no item_id.", op.Kind)
	}
	if !qtyOrNote && (op.Quantity != nil || op.Note != nil) {
		return invalid("quantity", "A %s op changes no quantity or note.", op.Kind)
	}
	return nil
}

// CheckTitle trims a draft title and checks its length.
func CheckTitle(t string) (string, error) {
	t = strings.TrimSpace(t)
	if n := utf8.RuneCountInString(t); n < 1 || n > MaxTitle {
		return "", invalid("title", "The title must be 1 to %d characters.", MaxTitle)
	}
	return t, nil
}

func applySetTitle(d *Draft, op *Op) error {
	if op.Title == nil {
		return invalid("title", "set_title needs a title.")
	}
	if err := onlyFields(op, true, false, false, false); err != nil {
		return err
	}
	t, err := CheckTitle(*op.Title)
	if err != nil {
		return err
	}
	if err := checkGrowth(d, jsonBytes(t)-jsonBytes(d.Title)); err != nil {
		return err
	}
	op.Title = &t
	d.Title = t
	return nil
}

func checkQuantity(q float64) (int, error) {
	if q != math.Trunc(q) || q < 1 || q > MaxQuantity {
		return 0, invalid("quantity", "The quantity must be a whole number from 1 to %d.", MaxQuantity)
	}
	return int(q), nil
}

func checkNote(n string) error {
	if utf8.RuneCountInString(n) > MaxNote {
		return invalid("note", "A note can be at most %d characters.", MaxNote)
	}
	return nil
}

func applyAddItem(d *Draft, op *Op, cat *catalog.Catalog) error {
	if op.Item == nil {
		return invalid("item", "add_item needs an item.")
	}
	if err := onlyFields(op, false, true, false, false); err != nil {
		return err
	}
	it := op.Item
	if _, err := uuid.Parse(it.ID); err != nil {
		return invalid("item.id", "The item id must be a UUID.")
	}
	if d.itemIndex(it.ID) >= 0 {
		return invalid("item.id", "An item with this id is already in the draft.")
	}
	if len(d.Items) >= MaxItems {
		return invalid("items", "A draft can hold at most %d items.", MaxItems)
	}
	p, ok := cat.Lookup(it.SKU)
	if !ok {
		return invalid("item.sku", "There is no product %q in the catalog.", it.SKU)
	}
	q, err := checkQuantity(it.Quantity)
	if err != nil {
		return err
	}
	if err := checkNote(it.Note); err != nil {
		return err
	}
	item := Item{ID: it.ID, SKU: p.SKU, Name: p.Name, Quantity: q, Note: it.Note}
	if err := checkGrowth(d, itemBytes(&item)); err != nil {
		return err
	}
	d.Items = append(d.Items, item)
	return nil
}

func itemGone() error {
	return errorf(CodeNotFound, "That item is no longer in the draft; someone removed it.")
}

func applyUpdateItem(d *Draft, op *Op) error {
	if err := onlyFields(op, false, false, true, true); err != nil {
		return err
	}
	if op.Quantity == nil && op.Note == nil {
		return invalid("quantity", "update_item needs a quantity or a note.")
	}
	i := d.itemIndex(op.ItemID)
	if i < 0 {
		return itemGone()
	}
	next := d.Items[i]
	if op.Quantity != nil {
		q, err := checkQuantity(*op.Quantity)
		if err != nil {
			return err
		}
		next.Quantity = q
	}
	if op.Note != nil {
		if err := checkNote(*op.Note); err != nil {
			return err
		}
		next.Note = *op.Note
	}
	if err := checkGrowth(d, itemBytes(&next)-itemBytes(&d.Items[i])); err != nil {
		return err
	}
	d.Items[i] = next
	return nil
}

func applyRemoveItem(d *Draft, op *Op) error {
	if err := onlyFields(op, false, false, true, false); err != nil {
		return err
	}
	i := d.itemIndex(op.ItemID)
	if i < 0 {
		return itemGone()
	}
	d.Items = append(d.Items[:i], d.Items[i+1:]...)
	return nil
}

// String describes an op for logs.
func (op *Op) String() string { return fmt.Sprintf("%s %s", op.Kind, op.ItemID) }
