package sms

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Progress is how far a survey got.
type Progress struct {
	Recipients int `json:"recipients"` // workers it was sent to
	Sent       int `json:"sent"`       // whose first question reached the SMSC
	Delivered  int `json:"delivered"`  // whose first question was delivered
	Started    int `json:"started"`    // answered at least one question
	Completed  int `json:"completed"`  // answered every question
	OptedOut   int `json:"opted_out"`  // sent STOP during the survey
	Reminded   int `json:"reminded"`
	Invalid    int `json:"invalid_answers"` // answers that did not validate (asked again)
	Late       int `json:"late_answers"`    // after the deadline: kept, not counted
	// ResponseRate is Started/Sent and CompletionRate Completed/Sent (0 before anything is sent).
	ResponseRate   float64            `json:"response_rate"`
	CompletionRate float64            `json:"completion_rate"`
	Questions      []QuestionProgress `json:"questions"`
	ByLocation     []LocationProgress `json:"by_location"` // by top-level location (county)
}

// QuestionProgress counts one question's answers.
type QuestionProgress struct {
	No      int            `json:"no"`
	Kind    QuestionKind   `json:"kind"`
	Answers int            `json:"answers"`
	Choices map[string]int `json:"choices,omitempty"` // by choice value
	Min     *int64         `json:"min,omitempty"`     // of the numbers answered
	Max     *int64         `json:"max,omitempty"`
	Mean    *float64       `json:"mean,omitempty"`
}

// LocationProgress is the progress in one top-level location.
type LocationProgress struct {
	LocationID   int64   `json:"location_id"` // 0: workers without a facility
	Code         string  `json:"code"`
	Name         string  `json:"name"`
	Recipients   int     `json:"recipients"`
	Started      int     `json:"started"`
	Completed    int     `json:"completed"`
	Answers      int     `json:"answers"`
	ResponseRate float64 `json:"response_rate"` // started / recipients
}

// FindSurvey returns a survey with its progress, within the caller's scope.
func (s *Store) FindSurvey(ctx context.Context, id int64) (*Survey, error) {
	sv, err := s.loadSurvey(ctx, id)
	if err != nil {
		return nil, err
	}
	if !visible(ctx, sv.scopePath) {
		return nil, mhero.Errorf(mhero.ENOTFOUND, "Survey not found.")
	}
	if sv.Progress, err = s.progress(ctx, sv); err != nil {
		return nil, pgError(err, "Survey progress")
	}
	return sv, nil
}

func (s *Store) progress(ctx context.Context, sv *Survey) (*Progress, error) {
	p := &Progress{Questions: []QuestionProgress{}, ByLocation: []LocationProgress{}}
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*), count(*) FILTER (WHERE m.submitted_at IS NOT NULL), count(*) FILTER (WHERE m.state = 'delivered'),
			count(*) FILTER (WHERE p.started_at IS NOT NULL), count(*) FILTER (WHERE p.state = 'completed'),
			count(*) FILTER (WHERE p.state = 'opted_out'), count(*) FILTER (WHERE p.reminded_at IS NOT NULL),
			COALESCE(sum(p.invalid_count), 0)
		FROM survey_participants p LEFT JOIN messages m ON m.id = p.message_id
		WHERE p.survey_id = $1`, sv.ID).QueryRow(func(r pgx.Row) error {
		return r.Scan(&p.Recipients, &p.Sent, &p.Delivered, &p.Started, &p.Completed, &p.OptedOut, &p.Reminded, &p.Invalid)
	})
	b.Queue(`SELECT count(*) FROM survey_answers WHERE survey_id = $1 AND late`, sv.ID).QueryRow(func(r pgx.Row) error {
		return r.Scan(&p.Late)
	})
	counts := map[int]*QuestionProgress{}
	for _, q := range sv.Questions {
		p.Questions = append(p.Questions, QuestionProgress{No: q.No, Kind: q.Kind})
	}
	for i := range p.Questions {
		counts[p.Questions[i].No] = &p.Questions[i]
	}
	b.Queue(`SELECT a.question_no, q.kind, CASE WHEN q.kind = 'choice' THEN a.value ELSE '' END, count(*),
			min(a.value::bigint) FILTER (WHERE q.kind = 'number'), max(a.value::bigint) FILTER (WHERE q.kind = 'number'),
			avg(a.value::bigint) FILTER (WHERE q.kind = 'number')
		FROM survey_answers a JOIN survey_questions q ON q.survey_id = a.survey_id AND q.no = a.question_no
		WHERE a.survey_id = $1 AND NOT a.late
		GROUP BY 1, 2, 3`, sv.ID).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var no, n int
			var kind, value string
			var lo, hi *int64
			var mean *float64
			if err := rows.Scan(&no, &kind, &value, &n, &lo, &hi, &mean); err != nil {
				return err
			}
			q := counts[no]
			if q == nil {
				continue
			}
			q.Answers += n
			if kind == string(KindChoice) {
				if q.Choices == nil {
					q.Choices = map[string]int{}
				}
				q.Choices[value] += n
			}
			if lo != nil {
				q.Min, q.Max = lo, hi
				m := math.Round(*mean*100) / 100
				q.Mean = &m
			}
		}
		return rows.Err()
	})
	b.Queue(`WITH p AS (
			SELECT COALESCE(top_location_id, 0) AS loc, count(*) AS n, count(*) FILTER (WHERE started_at IS NOT NULL) AS started,
				count(*) FILTER (WHERE state = 'completed') AS completed
			FROM survey_participants WHERE survey_id = $1 GROUP BY 1
		), a AS (
			SELECT COALESCE(p.top_location_id, 0) AS loc, count(*) AS answers
			FROM survey_answers a JOIN survey_participants p ON p.survey_id = a.survey_id AND p.worker_id = a.worker_id
			WHERE a.survey_id = $1 AND NOT a.late GROUP BY 1
		)
		SELECT p.loc, COALESCE(l.code, ''), COALESCE(l.name, ''), p.n, p.started, p.completed, COALESCE(a.answers, 0)
		FROM p LEFT JOIN a ON a.loc = p.loc LEFT JOIN locations l ON l.id = p.loc
		ORDER BY COALESCE(l.name, ''), p.loc`, sv.ID).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var l LocationProgress
			if err := rows.Scan(&l.LocationID, &l.Code, &l.Name, &l.Recipients, &l.Started, &l.Completed, &l.Answers); err != nil {
				return err
			}
			l.ResponseRate = rate(l.Started, l.Recipients)
			p.ByLocation = append(p.ByLocation, l)
		}
		return rows.Err()
	})
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	p.ResponseRate, p.CompletionRate = rate(p.Started, p.Sent), rate(p.Completed, p.Sent)
	return p, nil
}

func rate(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return math.Round(float64(n)/float64(of)*1e4) / 1e4
}

// ListSurveys lists the surveys the caller may see, newest first, before the cursor.
func (s *Store) ListSurveys(ctx context.Context, before int64, n int) ([]*Survey, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	scope := ""
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		scope = p.Scope.Path
	}
	rows, err := s.db.Query(ctx, `SELECT `+surveyCols+` FROM surveys s
		WHERE s.id < $1 AND ($3 = '' OR s.scope_path = $3 OR s.scope_path LIKE $3 || '/%')
		ORDER BY s.id DESC LIMIT $2`, before, n, scope)
	if err != nil {
		return nil, pgError(err, "Surveys")
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Survey, error) { return scanSurvey(r) })
	if err != nil {
		return nil, pgError(err, "Surveys")
	}
	for _, sv := range list {
		d, err := s.survey(ctx, sv.ID)
		if err != nil {
			return nil, err
		}
		sv.Questions = d.Questions
	}
	return list, nil
}

// Response is one stored answer, with who gave it and where they work.
type Response struct {
	ID         int64          `json:"id"`
	WorkerID   mhero.WorkerID `json:"worker_id"`
	IHRISID    string         `json:"worker_ihris_id,omitempty"`
	Facility   string         `json:"facility_code,omitempty"`
	Location   string         `json:"location_code,omitempty"` // top-level location
	Language   string         `json:"language"`
	QuestionNo int            `json:"question_no"`
	Kind       QuestionKind   `json:"kind"`
	Value      string         `json:"value"`
	Label      string         `json:"label,omitempty"` // a choice's label, in the survey's first language
	Late       bool           `json:"late"`
	Channel    string         `json:"channel"` // sms or ussd
	AnsweredAt time.Time      `json:"answered_at"`
}

// Responses streams a survey's answers in id order after the cursor (n of them; 0 for
// all) to fn, within the caller's scope.
func (s *Store) Responses(ctx context.Context, id, after int64, n int, fn func(Response) error) error {
	sv, err := s.loadSurvey(ctx, id)
	if err != nil {
		return err
	}
	if !visible(ctx, sv.scopePath) {
		return mhero.Errorf(mhero.ENOTFOUND, "Survey not found.")
	}
	limit := any(nil)
	if n > 0 {
		limit = n
	}
	rows, err := s.db.Query(ctx, `SELECT a.id, a.worker_id, COALESCE(w.ihris_id, ''), COALESCE(f.code, ''), COALESCE(l.code, ''),
			COALESCE(p.language, ''), a.question_no, a.value, a.late, a.channel, a.answered_at
		FROM survey_answers a
		LEFT JOIN survey_participants p ON p.survey_id = a.survey_id AND p.worker_id = a.worker_id
		LEFT JOIN workers w ON w.id = a.worker_id
		LEFT JOIN facilities f ON f.id = w.facility_id
		LEFT JOIN locations l ON l.id = p.top_location_id
		WHERE a.survey_id = $1 AND a.id > $2
		ORDER BY a.id LIMIT $3`, id, after, limit)
	if err != nil {
		return pgError(err, "Survey responses")
	}
	defer rows.Close()
	for rows.Next() {
		var r Response
		if err := rows.Scan(&r.ID, &r.WorkerID, &r.IHRISID, &r.Facility, &r.Location, &r.Language, &r.QuestionNo, &r.Value,
			&r.Late, &r.Channel, &r.AnsweredAt); err != nil {
			return pgError(err, "Survey responses")
		}
		if r.QuestionNo >= 1 && r.QuestionNo <= len(sv.Questions) {
			q := &sv.Questions[r.QuestionNo-1]
			r.Kind = q.Kind
			for _, c := range q.Choices {
				if c.Value == r.Value {
					r.Label = c.Label.In(sv.Languages[0], sv.Languages[0])
				}
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return pgError(rows.Err(), "Survey responses")
}
