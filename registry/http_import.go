package registry

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

func (h *handler) importRoutes(r *mux.Router) {
	r.HandleFunc("/imports", api.Require(mhero.RoleAdmin, h.createImport)).Methods(http.MethodPost)
	r.HandleFunc("/imports/{id}", api.Require(mhero.RoleAdmin, h.getImport)).Methods(http.MethodGet)
}

// createImport streams the request body (CSV or a FHIR bundle) into the importer.
// ?partial=true commits good rows; ?dry_run=true validates only; ?format= forces a kind.
func (h *handler) createImport(w http.ResponseWriter, r *http.Request) {
	// An import upserts across the whole registry (parents, facilities anywhere in the
	// file), so it is not something a scoped key may do.
	if p := mhero.PrincipalFromContext(r.Context()); p != nil && p.Scope != nil {
		h.fail(w, r, mhero.Errorf(mhero.EFORBIDDEN, "Imports need an admin key without a location scope."))
		return
	}
	q := r.URL.Query()
	opt := ImportOptions{Format: ImportFormat(q.Get("format")), Source: "api"}
	var err error
	if v := q.Get("partial"); v != "" {
		if opt.Partial, err = strconv.ParseBool(v); err != nil {
			h.fail(w, r, mhero.Errorf(mhero.EINVALID, "partial must be true or false."))
			return
		}
	}
	if v := q.Get("dry_run"); v != "" {
		if opt.DryRun, err = strconv.ParseBool(v); err != nil {
			h.fail(w, r, mhero.Errorf(mhero.EINVALID, "dry_run must be true or false."))
			return
		}
	}
	if name := q.Get("name"); name != "" {
		opt.Source = "api:" + name
	}
	limit := h.s.MaxImportBody
	if limit <= 0 {
		limit = MaxImportBody
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	res, err := h.s.Import(r.Context(), body, opt)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = mhero.Errorf(mhero.ETOOLARGE, "The import file is larger than %d bytes; nothing was written.", tooBig.Limit)
	}
	if err != nil {
		if res != nil && mhero.ErrorCode(err) == mhero.EVALIDATION {
			// Every bad row is in the details; the result says what was (not) written.
			var body api.ErrorBody
			body.Error.Code, body.Error.Message = mhero.EVALIDATION, mhero.ErrorMessage(err)
			body.Error.Details = mhero.ErrorDetails(err)
			api.JSON(w, http.StatusUnprocessableEntity, struct {
				api.ErrorBody
				Import *ImportResult `json:"import"`
			}{body, res})
			return
		}
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusCreated, res)
}

func (h *handler) getImport(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil {
		h.fail(w, r, mhero.Errorf(mhero.EINVALID, "import id must be a number."))
		return
	}
	res, err := h.s.FindImport(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.JSON(w, http.StatusOK, res)
}
