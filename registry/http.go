package registry

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// MaxImportBody bounds an uploaded import file. The importer streams it, so the limit
// guards the database, not memory.
const MaxImportBody = 512 << 20

// Routes registers the registry's REST resources on the API router.
func (s *Store) Routes(srv *api.Server) {
	h := &handler{s: s, srv: srv}
	r := srv.API
	reader, admin := mhero.RoleReader, mhero.RoleAdmin

	log := srv.Log
	ref := func(r *http.Request) string { return mux.Vars(r)["ref"] }

	r.HandleFunc("/workers", api.Require(reader, h.listWorkers)).Methods(http.MethodGet)
	r.HandleFunc("/workers", api.Require(admin, api.With(log, http.StatusCreated, func(r *http.Request, in WorkerInput) (*mhero.Worker, error) {
		return s.CreateWorker(r.Context(), in)
	}))).Methods(http.MethodPost)
	r.HandleFunc("/workers/{ref}", api.Require(reader, api.Get(log, func(r *http.Request) (*mhero.Worker, error) {
		return s.FindWorker(r.Context(), ref(r))
	}))).Methods(http.MethodGet)
	r.HandleFunc("/workers/{ref}", api.Require(admin, api.With(log, http.StatusOK, func(r *http.Request, in WorkerInput) (*mhero.Worker, error) {
		return s.UpdateWorker(r.Context(), ref(r), in)
	}))).Methods(http.MethodPut)
	r.HandleFunc("/workers/{ref}", api.Require(admin, api.Do(log, func(r *http.Request) error {
		return s.DeactivateWorker(r.Context(), ref(r))
	}))).Methods(http.MethodDelete)
	r.HandleFunc("/targets/preview", api.Require(reader, api.With(log, http.StatusOK, h.previewTarget))).Methods(http.MethodPost)

	r.HandleFunc("/facilities", api.Require(reader, h.listFacilities)).Methods(http.MethodGet)
	r.HandleFunc("/facilities", api.Require(admin, api.With(log, http.StatusCreated, func(r *http.Request, in FacilityInput) (*mhero.Facility, error) {
		return s.CreateFacility(r.Context(), in)
	}))).Methods(http.MethodPost)
	r.HandleFunc("/facilities/{ref}", api.Require(reader, api.Get(log, func(r *http.Request) (*mhero.Facility, error) {
		return s.FindFacility(r.Context(), ref(r))
	}))).Methods(http.MethodGet)
	r.HandleFunc("/facilities/{ref}", api.Require(admin, api.With(log, http.StatusOK, func(r *http.Request, in FacilityInput) (*mhero.Facility, error) {
		return s.UpdateFacility(r.Context(), ref(r), in)
	}))).Methods(http.MethodPut)
	r.HandleFunc("/facilities/{ref}", api.Require(admin, api.Do(log, func(r *http.Request) error {
		return s.DeleteFacility(r.Context(), ref(r))
	}))).Methods(http.MethodDelete)

	r.HandleFunc("/locations", api.Require(reader, h.listLocations)).Methods(http.MethodGet)
	r.HandleFunc("/locations", api.Require(admin, api.With(log, http.StatusCreated, func(r *http.Request, in LocationInput) (*mhero.Location, error) {
		return s.CreateLocation(r.Context(), in)
	}))).Methods(http.MethodPost)
	r.HandleFunc("/locations/{ref}", api.Require(reader, api.Get(log, func(r *http.Request) (*mhero.Location, error) {
		return s.FindLocation(r.Context(), ref(r))
	}))).Methods(http.MethodGet)
	r.HandleFunc("/locations/{ref}", api.Require(admin, api.With(log, http.StatusOK, func(r *http.Request, in LocationInput) (*mhero.Location, error) {
		return s.UpdateLocation(r.Context(), ref(r), in)
	}))).Methods(http.MethodPut)
	r.HandleFunc("/locations/{ref}", api.Require(admin, api.Do(log, func(r *http.Request) error {
		return s.DeleteLocation(r.Context(), ref(r))
	}))).Methods(http.MethodDelete)

	for _, table := range []string{"cadres", "skills"} {
		r.HandleFunc("/"+table, api.Require(reader, api.Get(log, func(r *http.Request) (api.Page[Code], error) {
			items, err := s.ListCodes(r.Context(), table)
			return api.Page[Code]{Items: items}, err
		}))).Methods(http.MethodGet)
		r.HandleFunc("/"+table, api.Require(admin, api.With(log, http.StatusOK, func(r *http.Request, in codeInput) (Code, error) {
			return s.UpsertCode(r.Context(), table, Code(in))
		}))).Methods(http.MethodPost)
	}

	h.importRoutes(r)

	r.HandleFunc("/apikeys", api.Require(admin, api.Get(log, func(r *http.Request) (api.Page[*APIKey], error) {
		keys, err := s.ListAPIKeys(r.Context())
		return api.Page[*APIKey]{Items: keys}, err
	}))).Methods(http.MethodGet)
	r.HandleFunc("/apikeys", api.Require(admin, api.With(log, http.StatusCreated, h.createKey))).Methods(http.MethodPost)
	r.HandleFunc("/apikeys/{id}", api.Require(admin, api.Do(log, func(r *http.Request) error {
		id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
		if err != nil {
			return mhero.Errorf(mhero.EINVALID, "key id must be a number.")
		}
		return s.RevokeAPIKey(r.Context(), id)
	}))).Methods(http.MethodDelete)
	r.HandleFunc("/audit", api.Require(admin, h.listAudit)).Methods(http.MethodGet)
}

type handler struct {
	s   *Store
	srv *api.Server
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	api.Error(w, r, h.srv.Log, err)
}

func targetFromQuery(r *http.Request) (Target, error) {
	t := Target{
		Cadres:     api.QueryList(r, "cadre"),
		Locations:  api.QueryList(r, "location"),
		Facilities: api.QueryList(r, "facility"),
		Skills:     api.QueryList(r, "skill"),
		Languages:  api.QueryList(r, "language"),
	}
	if v := r.URL.Query().Get("include_inactive"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return t, mhero.Errorf(mhero.EINVALID, "include_inactive must be true or false.")
		}
		t.IncludeInactive = b
	}
	return t, nil
}

var workerCSVHeader = []string{"id", "ihris_id", "name", "msisdn", "alt_msisdn", "cadre", "facility_id", "skills", "language", "active", "opted_out", "updated_at"}

func workerCSVRow(w *mhero.Worker) []string {
	return []string{strconv.FormatInt(int64(w.ID), 10), w.IHRISID, w.Name, w.MSISDN.E164(), w.AltMSISDN.E164(), w.Cadre,
		strconv.FormatInt(int64(w.FacilityID), 10), strings.Join(w.Skills, ";"), w.Language,
		strconv.FormatBool(w.Active), strconv.FormatBool(w.OptedOut), w.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z")}
}

func (h *handler) listWorkers(w http.ResponseWriter, r *http.Request) {
	after, n, err := api.PageParams(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	t, err := targetFromQuery(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	items, err := h.s.ListWorkers(r.Context(), t, after, n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteList(w, r, items, n, func(w *mhero.Worker) int64 { return int64(w.ID) }, workerCSVHeader, workerCSVRow)
}

// previewRequest is a Target plus how many sample workers to return.
type previewRequest struct {
	Target
	Sample *int `json:"sample,omitempty"`
}

func (h *handler) previewTarget(r *http.Request, in previewRequest) (*Preview, error) {
	n := 10
	if in.Sample != nil {
		if *in.Sample < 0 || *in.Sample > 100 {
			return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "Preview is not valid.",
				Details: []mhero.ErrorDetail{{Field: "sample", Message: "sample must be from 0 to 100"}}}
		}
		n = *in.Sample
	}
	in.IncludeInactive = false // a preview is of who would be messaged
	return h.s.PreviewTarget(r.Context(), in.Target, n)
}

var facilityCSVHeader = []string{"id", "code", "name", "location_id", "dhis2_uid", "dhis2_code"}

func (h *handler) listFacilities(w http.ResponseWriter, r *http.Request) {
	after, n, err := api.PageParams(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	items, err := h.s.ListFacilities(r.Context(), FacilityFilter{Under: q.Get("location"), Search: q.Get("q"), After: after, Limit: n})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteList(w, r, items, n, func(f *mhero.Facility) int64 { return int64(f.ID) }, facilityCSVHeader, func(f *mhero.Facility) []string {
		return []string{strconv.FormatInt(int64(f.ID), 10), f.Code, f.Name, strconv.FormatInt(int64(f.LocationID), 10), f.DHIS2UID, f.DHIS2Code}
	})
}

var locationCSVHeader = []string{"id", "code", "name", "level", "parent_id", "path"}

func (h *handler) listLocations(w http.ResponseWriter, r *http.Request) {
	after, n, err := api.PageParams(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	f := LocationFilter{Under: q.Get("under"), Search: q.Get("q"), After: after, Limit: n}
	if v := q.Get("level"); v != "" {
		lvl, err := strconv.Atoi(v)
		if err != nil || lvl < 0 {
			h.fail(w, r, mhero.Errorf(mhero.EINVALID, "level must be a number from 0."))
			return
		}
		f.Level = &lvl
	}
	items, err := h.s.ListLocations(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteList(w, r, items, n, func(l *mhero.Location) int64 { return int64(l.ID) }, locationCSVHeader, func(l *mhero.Location) []string {
		return []string{strconv.FormatInt(int64(l.ID), 10), l.Code, l.Name, strconv.Itoa(l.Level), strconv.FormatInt(int64(l.ParentID), 10), l.Path}
	})
}

// keyInput is the body of POST /apikeys.
type keyInput struct {
	Name  string     `json:"name"`
	Role  mhero.Role `json:"role"`
	Scope string     `json:"scope,omitempty"`
}

// newKey is a created key with its secret, shown this once.
type newKey struct {
	*APIKey
	Key string `json:"key"`
}

func (h *handler) createKey(r *http.Request, in keyInput) (newKey, error) {
	key, k, err := h.s.CreateAPIKey(r.Context(), in.Name, in.Role, in.Scope)
	return newKey{k, key}, err
}

// codeInput is the body of POST /cadres and /skills.
type codeInput struct {
	ID   int32  `json:"-"`
	Code string `json:"code"`
	Name string `json:"name"`
}

func (h *handler) listAudit(w http.ResponseWriter, r *http.Request) {
	before, n, err := api.PageParams(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	items, err := h.s.ListAudit(r.Context(), before, n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	next := ""
	if len(items) == n {
		next = api.EncodeCursor(items[len(items)-1].ID)
	}
	api.JSON(w, http.StatusOK, api.Page[*AuditEntry]{Items: items, NextCursor: next})
}
