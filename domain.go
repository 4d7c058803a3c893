package mhero

import "time"

// LocationID, FacilityID and WorkerID are the registry's internal identifiers. Everything a
// user names can also be named by the code it came with from iHRIS (see each type's Code).
type (
	LocationID int64
	FacilityID int64
	WorkerID   int64
)

// Location is one node of the administrative tree: country, county, district, ...
type Location struct {
	ID       LocationID `json:"id"`
	Code     string     `json:"code"`                // iHRIS / FHIR Location id or CSV code; unique
	Name     string     `json:"name"`                // display name
	Level    int        `json:"level"`               // depth in the tree, the root country is 0
	ParentID LocationID `json:"parent_id,omitempty"` // 0 for a root
	Path     string     `json:"path"`                // materialised path of ids, "1/4/17", for subtree queries
}

// Facility is a health facility attached to a location.
type Facility struct {
	ID         FacilityID `json:"id"`
	Code       string     `json:"code"` // iHRIS id or CSV code; unique
	Name       string     `json:"name"`
	LocationID LocationID `json:"location_id"`
	DHIS2UID   string     `json:"dhis2_uid,omitempty"`  // DHIS2 org-unit uid, for exports
	DHIS2Code  string     `json:"dhis2_code,omitempty"` // DHIS2 org-unit code, when exports map by code
}

// Worker is a health worker known to the registry.
type Worker struct {
	ID         WorkerID   `json:"id"`
	IHRISID    string     `json:"ihris_id,omitempty"` // the Practitioner id in iHRIS; unique when set
	Name       string     `json:"name"`
	MSISDN     MSISDN     `json:"msisdn"`                // primary phone, unique
	AltMSISDN  MSISDN     `json:"alt_msisdn,omitempty"`  // optional second phone
	Cadre      string     `json:"cadre,omitempty"`       // cadre code, e.g. "chw", "nurse"
	FacilityID FacilityID `json:"facility_id,omitempty"` // 0 when unattached
	Skills     []string   `json:"skills"`                // skill codes
	Language   string     `json:"language"`              // preferred language, ISO 639-1
	Active     bool       `json:"active"`                // inactive workers are never messaged
	OptedOut   bool       `json:"opted_out"`             // said STOP; never messaged until START
	UpdatedAt  time.Time  `json:"updated_at"`
}

// Validate performs the checks every adapter relies on.
func (w *Worker) Validate() error {
	var details []ErrorDetail
	if w.Name == "" {
		details = append(details, ErrorDetail{Field: "name", Message: "name is required"})
	}
	if w.MSISDN == "" {
		details = append(details, ErrorDetail{Field: "msisdn", Message: "phone number is required"})
	}
	if w.AltMSISDN != "" && w.AltMSISDN == w.MSISDN {
		details = append(details, ErrorDetail{Field: "alt_msisdn", Message: "second phone repeats the first"})
	}
	if w.Language != "" && len(w.Language) != 2 {
		details = append(details, ErrorDetail{Field: "language", Message: "language must be a two-letter ISO 639-1 code"})
	}
	if len(details) > 0 {
		return &Error{Code: EVALIDATION, Message: "Worker is not valid.", Details: details}
	}
	return nil
}

// Role is what an API key may do. Roles are ordered: admin can do what sender can, and
// sender what reader can.
type Role string

const (
	RoleReader Role = "reader" // read the registry and reports
	RoleSender Role = "sender" // also send messages and broadcasts
	RoleAdmin  Role = "admin"  // also change the registry and manage imports
)

// Allows reports whether a key with role r may act as role need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && r.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case RoleReader:
		return 1
	case RoleSender:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Principal is who is calling the API: an API key with its role and optional scope.
type Principal struct {
	KeyID int64  `json:"key_id"`
	Name  string `json:"name"`
	Role  Role   `json:"role"`
	// Scope limits the key to a location subtree; nil means the whole country.
	Scope *Location `json:"scope,omitempty"`
}

// MessageStatus is the state of one outbound SMS. Queued, submitted and unknown can still
// change (unknown: the SMSC's answer or receipt left it open); the others are final.
type MessageStatus string

const (
	MessageQueued        MessageStatus = "queued"
	MessageSubmitted     MessageStatus = "submitted"
	MessageDelivered     MessageStatus = "delivered"
	MessageUndeliverable MessageStatus = "undeliverable"
	MessageExpired       MessageStatus = "expired"
	MessageRejected      MessageStatus = "rejected"
	MessageFailed        MessageStatus = "failed"
	MessageUnknown       MessageStatus = "unknown"
	MessageCancelled     MessageStatus = "cancelled"
	// MessageSkipped: not sent because its worker opted out or was deactivated after it
	// was queued; the message's error code says which (opted_out, inactive).
	MessageSkipped MessageStatus = "skipped"
)

// Recipient is a worker a message goes to, with what a text's placeholders are filled
// with ({name}, {facility}, {cadre}).
type Recipient struct {
	WorkerID WorkerID
	Name     string
	MSISDN   MSISDN
	Facility string // facility name, "" when unattached
	Cadre    string // cadre name
	Language string
}
