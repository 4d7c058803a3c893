package sms

import (
	"context"
	"sync"

	"github.com/mhero-health/mhero"
)

// act does what lies outside the database transaction: opt-outs (the registry) and stock
// reports (the reports), a few at once: each is a transaction of its own on the same
// database, and more at once only queue for its CPU. A passing failure marks the SMS for
// retry.
func (p *Processor) act(ctx context.Context, hs []*handling) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, h := range hs {
		if h.optOut == nil && h.stock == nil {
			continue
		}
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
	err := p.s.deps.OptOuts.SetOptOut(ctx, h.worker.msisdn, *h.optOut)
	if err != nil && mhero.ErrorCode(err) != mhero.ENOTFOUND { // a worker gone since: nothing to change
		h.retry, h.note = true, "opt-out: "+err.Error()
	}
}

// submitStock stores a STOCK report and words the reply from the outcome.
func (s *Store) submitStock(ctx context.Context, h *handling) {
	r, err := s.deps.Stock.SubmitStockReport(ctx, *h.stock)
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
