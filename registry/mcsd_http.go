package registry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// SyncRoutes registers the iHRIS sync's resources: GET /api/v1/syncs lists the recorded
// syncs and POST /api/v1/syncs runs one now, both for admins without a location scope.
// sy is nil when iHRIS is not configured: the list still answers, the POST answers 501.
func (s *Store) SyncRoutes(srv *api.Server, sy *Syncer) {
	admin := mhero.RoleAdmin
	srv.API.HandleFunc("/syncs", api.Require(admin, func(w http.ResponseWriter, r *http.Request) {
		if p := mhero.PrincipalFromContext(r.Context()); p != nil && p.Scope != nil {
			api.Error(w, r, srv.Log, errUnscopedSync)
			return
		}
		before, n, err := api.PageParams(r)
		if err != nil {
			api.Error(w, r, srv.Log, err)
			return
		}
		runs, err := s.ListSyncs(r.Context(), before, n)
		if err != nil {
			api.Error(w, r, srv.Log, err)
			return
		}
		api.WriteList(w, r, runs, n, func(s SyncRun) int64 { return s.ID }, syncHeader, syncRow)
	})).Methods(http.MethodGet)
	srv.API.HandleFunc("/syncs", api.Require(admin, api.Get(srv.Log, func(r *http.Request) (*SyncRun, error) {
		if sy == nil {
			return nil, mhero.Errorf(mhero.ENOTIMPLEMENT, "iHRIS sync is not configured: add an ihris section to the configuration file.")
		}
		return sy.Sync(r.Context())
	}))).Methods(http.MethodPost)
}

var syncHeader = []string{"id", "source", "mode", "trigger", "actor", "status", "started_at", "finished_at", "since",
	"next_since", "pages", "created", "updated", "deactivated", "rows_failed", "error"}

func syncRow(s SyncRun) []string {
	t := func(p *time.Time) string {
		if p == nil {
			return ""
		}
		return p.UTC().Format(time.RFC3339)
	}
	return []string{strconv.FormatInt(s.ID, 10), s.Source, s.Mode, s.Trigger, s.Actor, s.Status, t(&s.StartedAt),
		t(s.FinishedAt), t(s.Since), t(s.NextSince), strconv.Itoa(s.Pages), strconv.Itoa(s.Created), strconv.Itoa(s.Updated),
		strconv.Itoa(s.Deactivated), strconv.Itoa(s.RowsFailed), s.Error}
}
