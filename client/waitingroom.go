package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/revenueguard/revguard"
)

// WaitingRoomSettings is the body of PutWaitingRoom. Zero PreQueueSeconds takes the
// server's default (an hour); zero AdmissionSeconds means the SKU's hold time.
type WaitingRoomSettings struct {
	AdmitPerSecond   int64 `json:"admit_per_second"`
	PreQueueSeconds  int64 `json:"pre_queue_seconds,omitzero"`
	AdmissionSeconds int64 `json:"admission_seconds,omitzero"`
}

// WaitingRoom is a SKU's waiting room: its settings, counts and draw.
type WaitingRoom struct {
	SKU              string `json:"sku"`
	PreQueueSeconds  int64  `json:"pre_queue_seconds"`
	AdmitPerSecond   int64  `json:"admit_per_second"`
	AdmissionSeconds int64  `json:"admission_seconds"` // 0: the SKU's hold time
	Joined           int64  `json:"joined"`
	PreQueue         int64  `json:"pre_queue"`
	Waiting          int64  `json:"waiting"`
	Admitted         int64  `json:"admitted"`
	Used             int64  `json:"used"`
	SoldOut          bool   `json:"sold_out"`
	Draw             *Draw  `json:"draw"` // nil before the draw
	Meta             Meta   `json:"-"`    // Meta.StatusCode is 201 when PutWaitingRoom created it
}

// Draw is the record of a room's draw: revguard.DrawOrder(seed, the pre-queue in join
// order) is the order it gave.
type Draw struct {
	Seed    string    `json:"seed"` // hex
	DrawnAt time.Time `json:"drawn_at"`
	Size    int64     `json:"size"`
}

// Place is a customer's place in a SKU's waiting room.
type Place struct {
	SKU           string    `json:"sku"`
	CustomerID    string    `json:"customer_id"`
	Status        string    `json:"status"`                 // revguard.PlaceStatus
	Position      int64     `json:"position"`               // 0 unless waiting; 1 is next
	EstimatedWait int64     `json:"estimated_wait_seconds"` // 0 unless waiting
	JoinedAt      time.Time `json:"joined_at"`
	OpensAt       time.Time `json:"opens_at"`
	AdmittedAt    time.Time `json:"admitted_at"`
	AdmittedUntil time.Time `json:"admitted_until"`
	Meta          Meta      `json:"-"` // Meta.StatusCode is 201 when Join gave a new place
}

func roomPath(sku string) string { return "/v1/skus/" + url.PathEscape(sku) + "/waiting-room" }

// PutWaitingRoom gives a SKU a waiting room, or replaces its settings (admin).
func (c *Client) PutWaitingRoom(ctx context.Context, sku string, s WaitingRoomSettings) (*WaitingRoom, error) {
	var out WaitingRoom
	m, _, err := c.do(ctx, call{method: http.MethodPut, path: roomPath(sku), body: s, safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// GetWaitingRoom returns a SKU's waiting room (admin).
func (c *Client) GetWaitingRoom(ctx context.Context, sku string) (*WaitingRoom, error) {
	var out WaitingRoom
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: roomPath(sku), safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}

// DeleteWaitingRoom turns a SKU's waiting room off (admin). A retry answered 404
// means an earlier attempt deleted it: DeleteWaitingRoom then returns nil.
func (c *Client) DeleteWaitingRoom(ctx context.Context, sku string) error {
	_, _, err := c.do(ctx, call{method: http.MethodDelete, path: roomPath(sku), safe: true, doneOnRetry: revguard.CodeWaitingRoomNotFound}, nil)
	return err
}

// JoinWaitingRoom gives the Client's customer a place in a SKU's waiting room, or
// returns the place it has. turnstileToken is needed for a new place while the
// server's bot check is on.
func (c *Client) JoinWaitingRoom(ctx context.Context, sku, turnstileToken string) (*Place, error) {
	var hdr []string
	if turnstileToken != "" {
		hdr = []string{"Cf-Turnstile-Response", turnstileToken}
	}
	var out Place
	m, _, err := c.do(ctx, call{method: http.MethodPost, path: roomPath(sku) + "/place", header: hdr, safe: true, spendsToken: turnstileToken != ""}, &out)
	out.Meta = m
	return result(&out, err)
}

// Place returns the Client's customer's place in a SKU's waiting room: cheap, poll it.
func (c *Client) Place(ctx context.Context, sku string) (*Place, error) {
	var out Place
	m, _, err := c.do(ctx, call{method: http.MethodGet, path: roomPath(sku) + "/place", safe: true}, &out)
	out.Meta = m
	return result(&out, err)
}
