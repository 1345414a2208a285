package server_test

import (
	"strings"
	"testing"

	"handoff/server"
)

func TestTeamsAndSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		if r := alice.do("GET", "/api/me", nil); r.status != 401 || r.errCode() != "unauthenticated" {
			t.Fatalf("me without session: %d %s", r.status, r.raw)
		}
		token := alice.createTeam("  Acme buyers ", "Alice")
		if len(token) < 22 { // 128 bits in base64url
			t.Fatalf("invite token %q is too short to hold 128 random bits", token)
		}
		me := alice.must(200, "GET", "/api/me", nil)
		if me["team"].(map[string]any)["name"] != "Acme buyers" || me["invite_token"] != token {
			t.Fatalf("me: %v", me)
		}
		anon := e.client()
		look := anon.must(200, "POST", "/api/invites/lookup", map[string]string{"invite_token": token})
		if look["team"].(map[string]any)["name"] != "Acme buyers" {
			t.Fatalf("lookup: %v", look)
		}
		if r := anon.do("POST", "/api/invites/lookup", map[string]string{"invite_token": "nope"}); r.status != 404 || r.errCode() != "not_found" {
			t.Fatalf("unknown token: %d %s", r.status, r.raw)
		}
		if r := anon.do("POST", "/api/join", map[string]string{"invite_token": "nope", "display_name": "Bob"}); r.status != 404 {
			t.Fatalf("join with unknown token: %d %s", r.status, r.raw)
		}
		anon.join(token, "Bob")
		bob := anon.must(200, "GET", "/api/me", nil)
		if bob["member"].(map[string]any)["display_name"] != "Bob" || bob["team"].(map[string]any)["name"] != "Acme buyers" {
			t.Fatalf("bob: %v", bob)
		}
		if r := anon.do("POST", "/api/logout", nil); r.status != 204 {
			t.Fatalf("logout: %d", r.status)
		}
		if r := anon.do("GET", "/api/drafts", nil); r.status != 401 {
			t.Fatalf("after logout: %d", r.status)
		}
	})
}

func TestCookieFlags(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	r := e.client().do("POST", "/api/teams", map[string]string{"name": "A", "display_name": "B"})
	c := r.header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(c, want) {
			t.Errorf("cookie %q lacks %s", c, want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		alice := e.client()
		alice.createTeam("A team", "Alice")
		draft := alice.newDraft("Order")
		other := e.client()
		other.createTeam("Other team", "Olga")
		otherDraft := other.newDraft("Theirs")

		cases := []struct {
			name   string
			method string
			path   string
			body   any
			hdr    []string
			status int
			code   string
			field  string
		}{
			{"malformed json", "POST", "/api/drafts", `{"title":`, nil, 400, "bad_request", ""},
			{"unknown field", "POST", "/api/drafts", `{"title":"x","colour":"red"}`, nil, 400, "bad_request", ""},
			{"wrong type", "POST", "/api/drafts", `{"title":5}`, nil, 400, "bad_request", ""},
			{"trailing data", "POST", "/api/drafts", `{"title":"x"} {}`, nil, 400, "bad_request", ""},
			{"empty title", "POST", "/api/drafts", `{"title":"  "}`, nil, 422, "invalid", "title"},
			{"long team name", "POST", "/api/teams", map[string]string{"name": strings.Repeat("n", 81), "display_name": "x"}, nil, 422, "invalid", "name"},
			{"empty display name", "POST", "/api/teams", map[string]string{"name": "n", "display_name": " "}, nil, 422, "invalid", "display_name"},
			{"too large", "POST", "/api/drafts", `{"title":"` + strings.Repeat("x", 70000) + `"}`, nil, 413, "too_large", ""},
			{"other team's draft", "GET", "/api/drafts/" + otherDraft, nil, nil, 404, "not_found", ""},
			{"no such draft", "GET", "/api/drafts/not-a-uuid", nil, nil, 404, "not_found", ""},
			{"submit other team's draft", "POST", "/api/drafts/" + otherDraft + "/submit", map[string]int{"revision": 0}, nil, 404, "not_found", ""},
			{"stale revision", "POST", "/api/drafts/" + draft + "/submit", map[string]int{"revision": 3}, nil, 409, "stale_revision", ""},
			{"empty draft", "POST", "/api/drafts/" + draft + "/submit", map[string]int{"revision": 0}, nil, 422, "invalid", "items"},
			{"submit without revision", "POST", "/api/drafts/" + draft + "/submit", `{}`, nil, 422, "invalid", "revision"},
			{"foreign origin", "POST", "/api/drafts", map[string]string{"title": "x"}, []string{"Origin", "https://evil.example"}, 403, "forbidden_origin", ""},
			{"unknown api path", "GET", "/api/nothing", nil, nil, 404, "not_found", ""},
			{"no such operation", "GET", "/api/operations/6b1b0f5e-8a55-4a51-9e0e-1f1f1f1f1f1f", nil, nil, 404, "not_found", ""},
		}
		for _, tc := range cases {
			r := alice.do(tc.method, tc.path, tc.body, tc.hdr...)
			if r.status != tc.status || r.errCode() != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.raw, tc.status, tc.code)
				continue
			}
			if msg, _ := r.errField("message").(string); msg == "" {
				t.Errorf("%s: no message: %s", tc.name, r.raw)
			}
			if tc.field != "" && r.errField("field") != tc.field {
				t.Errorf("%s: field %v, want %s", tc.name, r.errField("field"), tc.field)
			}
		}
		if r := alice.do("POST", "/api/drafts", `{"title":"same origin"}`, "Origin", e.srv.URL); r.status != 201 {
			t.Errorf("own origin refused: %d %s", r.status, r.raw)
		}
		stale := alice.do("POST", "/api/drafts/"+draft+"/submit", map[string]int{"revision": 3})
		if stale.errField("current_revision") != float64(0) {
			t.Errorf("stale_revision without current_revision: %s", stale.raw)
		}
	})
}

func TestRateLimitedSignUp(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{AuthRate: 3})
	c := e.client()
	for i := 0; i < 3; i++ {
		if r := c.do("POST", "/api/invites/lookup", map[string]string{"invite_token": "x"}); r.status != 404 {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	r := c.do("POST", "/api/invites/lookup", map[string]string{"invite_token": "x"})
	if r.status != 429 || r.errCode() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d %v %s", r.status, r.header, r.raw)
	}
}

func TestStorageDownAnswers503(t *testing.T) {
	e := startEdge(t, sqldbtestURL(t), server.Config{})
	c := e.client()
	c.createTeam("A", "B")
	e.db.Close()
	r := c.do("GET", "/api/drafts", nil)
	if r.status != 503 || r.errCode() != "unavailable" {
		t.Fatalf("with the database closed: %d %s", r.status, r.raw)
	}
}

func TestCatalogAndDrafts(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *edge) {
		c := e.client()
		c.createTeam("A", "B")
		products := c.must(200, "GET", "/api/catalog", nil)["products"].([]any)
		p := products[0].(map[string]any)
		for _, k := range []string{"sku", "name", "unit_price_cents", "currency"} {
			if _, ok := p[k]; !ok {
				t.Fatalf("product lacks %s: %v", k, p)
			}
		}
		if _, ok := p["stock"]; ok {
			t.Fatal("stock is shown at the edge")
		}
		first := c.newDraft("First")
		second := c.newDraft("Second")
		list := c.must(200, "GET", "/api/drafts", nil)["drafts"].([]any)
		if len(list) != 2 || list[0].(map[string]any)["id"] != second || list[1].(map[string]any)["id"] != first {
			t.Fatalf("drafts not newest first: %v", list)
		}
		if _, ok := list[0].(map[string]any)["items"]; ok {
			t.Fatal("list carries items")
		}
		d := c.must(200, "GET", "/api/drafts/"+first, nil)
		if d["revision"] != float64(0) || d["state"] != "editing" || d["submission"] != nil || len(d["items"].([]any)) != 0 {
			t.Fatalf("new draft: %v", d)
		}
	})
}
