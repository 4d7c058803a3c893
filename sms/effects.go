package sms

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

// act does what the SMS of a batch ask of the registry (STOP and START) and the reports
// (STOCK). With stores that offer the batch APIs (OptOutBatcher, StockBatchReporter), the
// whole batch's opt-outs and stock reports are a few statements in tx, committed with the
// replies and handled_at. With others, each is a transaction of its own on another
// connection, a few at once. A passing failure marks the SMS for retry.
func (p *Processor) act(ctx context.Context, tx pgx.Tx, hs []*handling) {
	ob, _ := p.s.deps.OptOuts.(OptOutBatcher)
	sb, _ := p.s.deps.Stock.(StockBatchReporter)
	var optOuts, stocks, alone []*handling
	for _, h := range hs {
		switch {
		case h.optOut != nil && ob != nil:
			optOuts = append(optOuts, h)
		case h.stock != nil && sb != nil:
			stocks = append(stocks, h)
		case h.optOut != nil || h.stock != nil:
			alone = append(alone, h)
		}
	}
	if len(optOuts) > 0 {
		p.optOutBatch(ctx, tx, ob, optOuts)
	}
	if len(stocks) > 0 {
		p.s.submitStockBatch(ctx, tx, sb, stocks)
	}
	p.actAlone(ctx, alone)
}

// actAlone does each SMS's opt-out or stock report in a transaction of its own, a few at
// once: more at once only queue for the database's CPU.
func (p *Processor) actAlone(ctx context.Context, hs []*handling) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, h := range hs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if h.optOut != nil {
				p.optOut(ctx, h)
			} else {
				p.s.submitStock(ctx, h)
			}
		})
	}
	wg.Wait()
}

func (p *Processor) optOut(ctx context.Context, h *handling) {
	if p.s.deps.OptOuts == nil {
		h.retry, h.note = true, "no opt-out store configured"
		return
	}
	optOutOutcome(h, p.s.deps.OptOuts.SetOptOut(ctx, h.worker.msisdn, *h.optOut))
}

// optOutBatch records the opt-outs of a batch in its transaction.
func (p *Processor) optOutBatch(ctx context.Context, tx pgx.Tx, ob OptOutBatcher, hs []*handling) {
	msisdns, optedOut := make([]mhero.MSISDN, len(hs)), make([]bool, len(hs))
	for i, h := range hs {
		msisdns[i], optedOut[i] = h.worker.msisdn, *h.optOut
	}
	errs, err := ob.SetOptOuts(ctx, tx, msisdns, optedOut)
	if err == nil && len(errs) != len(hs) {
		err = errBatchLength
	}
	for i, h := range hs {
		if err != nil {
			optOutOutcome(h, err)
		} else {
			optOutOutcome(h, errs[i])
		}
	}
}

func optOutOutcome(h *handling, err error) {
	if err != nil && mhero.ErrorCode(err) != mhero.ENOTFOUND { // a worker gone since: nothing to change
		h.retry, h.note = true, "opt-out: "+err.Error()
	}
}

// errBatchLength is a batch API's answer that does not match its question.
var errBatchLength = mhero.Errorf(mhero.EINTERNAL, "a batch API answered with results missing")

// submitStock stores a STOCK report and words the reply from the outcome.
func (s *Store) submitStock(ctx context.Context, h *handling) {
	r, err := s.deps.Stock.SubmitStockReport(ctx, *h.stock)
	s.stockOutcome(h, r, err)
}

// submitStockBatch stores the STOCK reports of a batch in its transaction.
func (s *Store) submitStockBatch(ctx context.Context, tx pgx.Tx, sb StockBatchReporter, hs []*handling) {
	ins := make([]reports.StockInput, len(hs))
	for i, h := range hs {
		ins[i] = *h.stock
	}
	rs, err := sb.SubmitStockReports(ctx, tx, ins)
	if err == nil && len(rs) != len(hs) {
		err = errBatchLength
	}
	for i, h := range hs {
		switch {
		case err != nil:
			s.stockOutcome(h, nil, err)
		case rs[i].Report == nil && rs[i].Err == nil:
			s.stockOutcome(h, nil, errBatchLength)
		default:
			s.stockOutcome(h, rs[i].Report, rs[i].Err)
		}
	}
}

// stockOutcome words the reply to a STOCK report from what the reports said.
func (s *Store) stockOutcome(h *handling, r *reports.StockReport, err error) {
	t := h.lang.texts
	switch {
	case err == nil:
		h.as = HandledStock
		h.reply = h.lang.text(t.StockRecorded, map[string]string{"commodity": s.commodityName(r.Commodity, h.lang.code),
			"quantity": itoa(int64(r.Quantity)), "ref": r.Ref})
	case mhero.ErrorCode(err) == mhero.EVALIDATION || mhero.ErrorCode(err) == mhero.EINVALID:
		h.as, h.note = HandledStockRefused, truncateRunes(mhero.ErrorMessage(err), 200)
		h.reply = h.lang.text(t.StockRejected, nil)
		for _, d := range mhero.ErrorDetails(err) {
			switch d.Field {
			case "facility":
				h.reply = h.lang.text(t.StockNoFacility, nil)
			case "commodity":
				h.reply = h.lang.text(t.StockUnknownCommodity, map[string]string{"typed": h.parsed.Typed})
			case "quantity", "stockout_days":
				h.reply = h.lang.text(t.StockBadQuantity, nil)
			}
			h.note += "; " + d.Field + ": " + truncateRunes(d.Message, 100)
		}
	default:
		h.retry, h.note = true, "stock report: "+err.Error()
	}
}
