package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Team is a group of members sharing drafts.
type Team struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Member is a person in a team.
type Member struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

// principal is who is making a request.
type principal struct {
	Team        Team
	Member      Member
	InviteToken string
	// session is the hash of the session token, so logout can end the
	// session's sockets too.
	session string
}

const sessionCookie = "handoff_session"

type ctxKey int

const principalKey ctxKey = 1

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey).(principal)
	return p
}

// randomToken returns 256 random bits, URL-safe.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashToken is what the database keeps of a session token, so a leaked
// database does not leak live sessions.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func nowMillis() int64 { return time.Now().UTC().UnixMilli() }

// checkName trims a name and checks its 1 to 80 characters.
func checkName(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n < 1 || n > 80 {
		return "", invalid(field, "%s must be 1 to 80 characters.", humanField(field))
	}
	return v, nil
}

func humanField(f string) string {
	switch f {
	case "name":
		return "The team name"
	case "display_name":
		return "Your name"
	case "title":
		return "The title"
	}
	return f
}

type createTeamRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

func (s *Server) createTeam(w http.ResponseWriter, r *http.Request) error {
	var req createTeamRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	name, err := checkName("name", req.Name)
	if err != nil {
		return err
	}
	display, err := checkName("display_name", req.DisplayName)
	if err != nil {
		return err
	}
	p := principal{Team: Team{ID: uuid.NewString(), Name: name}, Member: Member{ID: uuid.NewString(), DisplayName: display}, InviteToken: randomToken()}
	token := randomToken()
	now := nowMillis()
	err = s.db.InTx(r.Context(), func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(r.Context(), s.db.Q(`INSERT INTO teams (id, name, invite_token, created_at) VALUES ($1, $2, $3, $4)`), p.Team.ID, p.Team.Name, p.InviteToken, now); err != nil {
			return err
		}
		return s.insertMemberAndSession(r.Context(), tx, p, token, now)
	})
	if err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	s.setSessionCookie(w, r, token)
	writeJSON(w, http.StatusCreated, map[string]any{"team": p.Team, "member": p.Member, "invite_token": p.InviteToken})
	return nil
}

func (s *Server) insertMemberAndSession(ctx context.Context, tx *sql.Tx, p principal, token string, now int64) error {
	if _, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO members (id, team_id, display_name, created_at) VALUES ($1, $2, $3, $4)`), p.Member.ID, p.Team.ID, p.Member.DisplayName, now); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.db.Q(`INSERT INTO sessions (token_hash, member_id, created_at) VALUES ($1, $2, $3)`), hashToken(token), p.Member.ID, now)
	return err
}

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil, MaxAge: 90 * 24 * 3600,
	})
}

type inviteRequest struct {
	InviteToken string `json:"invite_token"`
}

func (s *Server) teamByInvite(ctx context.Context, token string) (Team, error) {
	var t Team
	if token == "" || len(token) > 200 {
		return t, errorf(CodeNotFound, "This invite link is not valid. Ask your team for a new one.")
	}
	err := s.db.QueryRowContext(ctx, s.db.Q(`SELECT id, name FROM teams WHERE invite_token = $1`), token).Scan(&t.ID, &t.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return t, errorf(CodeNotFound, "This invite link is not valid. Ask your team for a new one.")
	}
	return t, err
}

func (s *Server) lookupInvite(w http.ResponseWriter, r *http.Request) error {
	var req inviteRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := s.teamByInvite(r.Context(), req.InviteToken)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"team": t})
	return nil
}

type joinRequest struct {
	InviteToken string `json:"invite_token"`
	DisplayName string `json:"display_name"`
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) error {
	var req joinRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	display, err := checkName("display_name", req.DisplayName)
	if err != nil {
		return err
	}
	t, err := s.teamByInvite(r.Context(), req.InviteToken)
	if err != nil {
		return err
	}
	p := principal{Team: t, Member: Member{ID: uuid.NewString(), DisplayName: display}}
	token := randomToken()
	if err := s.db.InTx(r.Context(), func(tx *sql.Tx) error {
		return s.insertMemberAndSession(r.Context(), tx, p, token, nowMillis())
	}); err != nil {
		return fmt.Errorf("join team %s: %w", t.ID, err)
	}
	s.setSessionCookie(w, r, token)
	writeJSON(w, http.StatusOK, map[string]any{"team": p.Team, "member": p.Member})
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"team": p.Team, "member": p.Member, "invite_token": p.InviteToken})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	session := principalFrom(r.Context()).session
	if _, err := s.db.ExecContext(r.Context(), s.db.Q(`DELETE FROM sessions WHERE token_hash = $1`), session); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	// The session's open sockets end with it, here and on other edges.
	s.hub.endSession(session)
	s.announce(r.Context(), fanEvent{Kind: fanLogout, Session: session})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authenticate resolves the session cookie; requests without a valid one
// answer 401.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principalOf(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	})
}

func (s *Server) principalOf(r *http.Request) (principal, error) {
	var p principal
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return p, errorf(CodeUnauthenticated, "Please sign in: create a team or join one with an invite link.")
	}
	err = s.db.QueryRowContext(r.Context(), s.db.Q(`SELECT m.id, m.display_name, t.id, t.name, t.invite_token
		FROM sessions s JOIN members m ON m.id = s.member_id JOIN teams t ON t.id = m.team_id
		WHERE s.token_hash = $1`), hashToken(c.Value)).
		Scan(&p.Member.ID, &p.Member.DisplayName, &p.Team.ID, &p.Team.Name, &p.InviteToken)
	p.session = hashToken(c.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return p, errorf(CodeUnauthenticated, "Your session has ended. Please sign in again.")
	}
	if err != nil {
		return p, fmt.Errorf("read session: %w", err)
	}
	return p, nil
}
