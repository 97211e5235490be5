package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// routeRoles is the authorization matrix: the roles that may call each
// route (nil: no token needed). Every route of the router must be here.
var routeRoles = map[string][]string{
	"GET /healthz": nil,
	"GET /readyz":  nil,
	"GET /metrics": nil,

	"POST /v1/streams/{streamId}/events":   {wire.RoleWriter},
	"GET /v1/streams/{streamId}/events":    {wire.RoleReader, wire.RolePIIReader},
	"GET /v1/streams/{streamId}/state":     {wire.RoleReader, wire.RolePIIReader},
	"GET /v1/streams/{streamId}/history":   {wire.RoleReader, wire.RolePIIReader},
	"GET /v1/events":                       {wire.RoleReader, wire.RolePIIReader},
	"GET /v1/lookup":                       {wire.RolePIIReader},
	"GET /v1/analytics/{category}":         {wire.RoleReader, wire.RolePIIReader, wire.RoleAuditor},
	"GET /v1/projections":                  {wire.RoleAdmin},
	"POST /v1/projections/{name}/rebuild":  {wire.RoleAdmin},
	"GET /v1/streams/{streamId}/subscribe": {wire.RoleReader, wire.RolePIIReader},
	"GET /v1/subscribe":                    {wire.RoleReader, wire.RolePIIReader},
	"POST /v1/subjects/{subject}/erase":    {wire.RoleAdmin},
	"GET /v1/subjects/{subject}/erasure":   {wire.RoleAdmin},
	"GET /v1/erasures":                     {wire.RoleAdmin, wire.RoleAuditor},
	"GET /v1/erasures/{erasureId}":         {wire.RoleAdmin, wire.RoleAuditor},
	"GET /v1/audit/export":                 {wire.RoleAdmin, wire.RoleAuditor},
	"GET /v1/subjects/{subject}/export":    {wire.RoleAdmin},
	"PUT /v1/subjects/{subject}/hold":      {wire.RoleAdmin},
	"DELETE /v1/subjects/{subject}/hold":   {wire.RoleAdmin},
	"GET /v1/policies":                     {wire.RoleAdmin},
	"GET /v1/policies/{eventType}":         {wire.RoleAdmin},
	"PUT /v1/policies/{eventType}":         {wire.RoleAdmin},
	"DELETE /v1/policies/{eventType}":      {wire.RoleAdmin},
	"POST /v1/tokens":                      {wire.RoleAdmin},
	"GET /v1/tokens":                       {wire.RoleAdmin},
	"DELETE /v1/tokens/{tokenId}":          {wire.RoleAdmin},
}

// Every route × every role: 401 without a token or with a bad one, 403
// with a role the route does not allow, and neither with one it allows.
func TestRouteRoleMatrix(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	admin, err := tk.admin.CreateToken(ctx, "admin-test", wire.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	multi, err := tk.admin.CreateToken(ctx, "writer-reader", wire.RoleWriter, wire.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{wire.RoleAdmin: admin.Secret}
	for role, s := range tk.secrets {
		secrets[role] = s
	}

	var routes []string
	err = chi.Walk(api.NewHandler(api.Options{}).(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if route == "/metrics" && method != http.MethodGet {
			return nil // a handler for every method; GET is the route
		}
		routes = append(routes, method+" "+strings.TrimSuffix(route, "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) < len(routeRoles) {
		t.Fatalf("walked %d routes, the matrix has %d", len(routes), len(routeRoles))
	}
	for _, rt := range routes {
		allowed, ok := routeRoles[rt]
		if !ok {
			t.Errorf("route %s is not in the authorization matrix", rt)
			continue
		}
		method, pattern, _ := strings.Cut(rt, " ")
		path := strings.NewReplacer("{streamId}", "matrix-1", "{subject}", "nobody@example.com", "{eventType}", "matrix-type",
			"{tokenId}", eventstore.NewEventID().String(), "{erasureId}", eventstore.NewEventID().String(), "{category}", "lead", "{name}", "analytics").Replace(pattern)
		call := func(token string) int {
			t.Helper()
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var body *strings.Reader
			if method == http.MethodPost || method == http.MethodPut {
				body = strings.NewReader(`{}`)
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequestWithContext(ctx, method, hs.URL+path, body)
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hs.Client().Do(req) // returns at the headers: subscriptions too
			if err != nil {
				t.Fatalf("%s: %v", rt, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if allowed == nil {
			if st := call(""); st == 401 || st == 403 {
				t.Errorf("%s without a token: %d, want it open", rt, st)
			}
			continue
		}
		if st := call(""); st != 401 {
			t.Errorf("%s without a token: %d, want 401", rt, st)
		}
		if st := call("lethe_not-a-real-token"); st != 401 {
			t.Errorf("%s with a bad token: %d, want 401", rt, st)
		}
		for _, role := range wire.Roles {
			st := call(secrets[role])
			switch {
			case slices.Contains(allowed, role) && (st == 401 || st == 403):
				t.Errorf("%s as %s: %d, want it allowed", rt, role, st)
			case !slices.Contains(allowed, role) && st != 403:
				t.Errorf("%s as %s: %d, want 403", rt, role, st)
			}
		}
		// A token with several roles has the rights of each.
		st := call(multi.Secret)
		if want := slices.Contains(allowed, wire.RoleWriter) || slices.Contains(allowed, wire.RoleReader); want == (st == 403) {
			t.Errorf("%s as writer+reader: %d", rt, st)
		}
	}
	// The bootstrap token is an admin.
	if _, err := tk.admin.ListTokens(ctx); err != nil {
		t.Errorf("bootstrap admin: %v", err)
	}
}
