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

	r.HandleFunc("/workers", api.Require(reader, h.listWorkers)).Methods(http.MethodGet)
	r.HandleFunc("/workers", api.Require(admin, h.createWorker)).Methods(http.MethodPost)
	r.HandleFunc("/workers/{ref}", api.Require(reader, h.getWorker)).Methods(http.MethodGet)
	r.HandleFunc("/workers/{ref}", api.Require(admin, h.updateWorker)).Methods(http.MethodPut)
	r.HandleFunc("/workers/{ref}", api.Require(admin, h.deactivateWorker)).Methods(http.MethodDelete)
	r.HandleFunc("/targets/preview", api.Require(reader, h.previewTarget)).Methods(http.MethodPost)

	r.HandleFunc("/facilities", api.Require(reader, h.listFacilities)).Methods(http.MethodGet)
	r.HandleFunc("/facilities", api.Require(admin, h.createFacility)).Methods(http.MethodPost)
	r.HandleFunc("/facilities/{ref}", api.Require(reader, h.getFacility)).Methods(http.MethodGet)
	r.HandleFunc("/facilities/{ref}", api.Require(admin, h.updateFacility)).Methods(http.MethodPut)
	r.HandleFunc("/facilities/{ref}", api.Require(admin, h.deleteFacility)).Methods(http.MethodDelete)

	r.HandleFunc("/locations", api.Require(reader, h.listLocations)).Methods(http.MethodGet)
	r.HandleFunc("/locations", api.Require(admin, h.createLocation)).Methods(http.MethodPost)
	r.HandleFunc("/locations/{ref}", api.Require(reader, h.getLocation)).Methods(http.MethodGet)
	r.HandleFunc("/locations/{ref}", api.Require(admin, h.updateLocation)).Methods(http.MethodPut)
	r.HandleFunc("/locations/{ref}", api.Require(admin, h.deleteLocation)).Methods(http.MethodDelete)

	r.HandleFunc("/cadres", api.Require(reader, h.listCodes("cadres"))).Methods(http.MethodGet)
	r.HandleFunc("/cadres", api.Require(admin, h.upsertCode("cadres"))).Methods(http.MethodPost)
	r.HandleFunc("/skills", api.Require(reader, h.listCodes("skills"))).Methods(http.MethodGet)
	r.HandleFunc("/skills", api.Require(admin, h.upsertCode("skills"))).Methods(http.MethodPost)

	h.importRoutes(r)

	r.HandleFunc("/apikeys", api.Require(admin, h.listKeys)).Methods(http.MethodGet)
	r.HandleFunc("/apikeys", api.Require(admin, h.createKey)).Methods(http.MethodPost)
	r.HandleFunc("/apikeys/{id}", api.Require(admin, h.revokeKey)).Methods(http.MethodDelete)
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

func (h *handler) getWorker(w http.ResponseWriter, r *http.Request) {
	wk, err := h.s.FindWorker(r.Context(), mux.Vars(r)["ref"])
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, wk)
}

func (h *handler) createWorker(w http.ResponseWriter, r *http.Request) {
	var in WorkerInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	wk, err := h.s.CreateWorker(r.Context(), in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusCreated, wk)
}

func (h *handler) updateWorker(w http.ResponseWriter, r *http.Request) {
	var in WorkerInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	wk, err := h.s.UpdateWorker(r.Context(), mux.Vars(r)["ref"], in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, wk)
}

func (h *handler) deactivateWorker(w http.ResponseWriter, r *http.Request) {
	if err := h.s.DeactivateWorker(r.Context(), mux.Vars(r)["ref"]); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// previewRequest is a Target plus how many sample workers to return.
type previewRequest struct {
	Target
	Sample *int `json:"sample,omitempty"`
}

func (h *handler) previewTarget(w http.ResponseWriter, r *http.Request) {
	var in previewRequest
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	n := 10
	if in.Sample != nil {
		if *in.Sample < 0 || *in.Sample > 100 {
			h.fail(w, r, &mhero.Error{Code: mhero.EVALIDATION, Message: "Preview is not valid.",
				Details: []mhero.ErrorDetail{{Field: "sample", Message: "sample must be from 0 to 100"}}})
			return
		}
		n = *in.Sample
	}
	in.IncludeInactive = false // a preview is of who would be messaged
	p, err := h.s.PreviewTarget(r.Context(), in.Target, n)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, p)
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

func (h *handler) getFacility(w http.ResponseWriter, r *http.Request) {
	f, err := h.s.FindFacility(r.Context(), mux.Vars(r)["ref"])
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, f)
}

func (h *handler) createFacility(w http.ResponseWriter, r *http.Request) {
	var in FacilityInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	f, err := h.s.CreateFacility(r.Context(), in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusCreated, f)
}

func (h *handler) updateFacility(w http.ResponseWriter, r *http.Request) {
	var in FacilityInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	f, err := h.s.UpdateFacility(r.Context(), mux.Vars(r)["ref"], in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, f)
}

func (h *handler) deleteFacility(w http.ResponseWriter, r *http.Request) {
	if err := h.s.DeleteFacility(r.Context(), mux.Vars(r)["ref"]); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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

func (h *handler) getLocation(w http.ResponseWriter, r *http.Request) {
	l, err := h.s.FindLocation(r.Context(), mux.Vars(r)["ref"])
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, l)
}

func (h *handler) createLocation(w http.ResponseWriter, r *http.Request) {
	var in LocationInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	l, err := h.s.CreateLocation(r.Context(), in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusCreated, l)
}

func (h *handler) updateLocation(w http.ResponseWriter, r *http.Request) {
	var in LocationInput
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	l, err := h.s.UpdateLocation(r.Context(), mux.Vars(r)["ref"], in)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, l)
}

func (h *handler) deleteLocation(w http.ResponseWriter, r *http.Request) {
	if err := h.s.DeleteLocation(r.Context(), mux.Vars(r)["ref"]); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) listCodes(table string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		items, err := h.s.ListCodes(r.Context(), table)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		api.JSON(w, http.StatusOK, api.Page[Code]{Items: items})
	}
}

func (h *handler) upsertCode(table string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Code string `json:"code"`
			Name string `json:"name"`
		}
		if err := api.Decode(w, r, &in); err != nil {
			h.fail(w, r, err)
			return
		}
		c, err := h.s.UpsertCode(r.Context(), table, Code{Code: in.Code, Name: in.Name})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		api.JSON(w, http.StatusOK, c)
	}
}

func (h *handler) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := h.s.ListAPIKeys(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, api.Page[*APIKey]{Items: keys})
}

func (h *handler) createKey(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name  string     `json:"name"`
		Role  mhero.Role `json:"role"`
		Scope string     `json:"scope,omitempty"`
	}
	if err := api.Decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	key, k, err := h.s.CreateAPIKey(r.Context(), in.Name, in.Role, in.Scope)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusCreated, struct {
		*APIKey
		Key string `json:"key"`
	}{k, key})
}

func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil {
		h.fail(w, r, mhero.Errorf(mhero.EINVALID, "key id must be a number."))
		return
	}
	if err := h.s.RevokeAPIKey(r.Context(), id); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
