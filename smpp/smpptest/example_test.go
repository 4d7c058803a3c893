package smpptest_test

import (
	"bufio"
	"fmt"
	"net"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// An SMSC that throttles above 100 submit_sm/s and sends receipts, driven here with
// go-smpp's PDU codec on a plain connection.
func ExampleNewServer() {
	srv := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret", Receipts: true, ThrottleTPS: 100})
	defer srv.Close()

	nc, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)

	bind := pdu.NewBindTransceiver()
	bind.Header().Seq = 1
	bind.Fields().Set(pdufield.SystemID, "mhero")
	bind.Fields().Set(pdufield.Password, "secret")
	bind.SerializeTo(nc)
	resp, _ := pdu.Decode(r)
	fmt.Println(resp.Header().ID, resp.Header().Seq, resp.Header().Status == 0)

	sm := pdu.NewSubmitSM(nil)
	sm.Header().Seq = 1 // the SMSC's first receipt will be numbered 1 too
	sm.Fields().Set(pdufield.SourceAddr, "384")
	sm.Fields().Set(pdufield.DestinationAddr, "231880000001")
	sm.Fields().Set(pdufield.RegisteredDelivery, uint8(1))
	sm.Fields().Set(pdufield.ShortMessage, []byte("Report ORS stock today"))
	sm.SerializeTo(nc)
	for range 2 {
		p, _ := pdu.Decode(r)
		switch p.Header().ID {
		case pdu.SubmitSMRespID:
			fmt.Println("submit_sm_resp", p.Header().Seq, p.Fields()[pdufield.MessageID])
		case pdu.DeliverSMID:
			fmt.Println("receipt", p.Header().Seq)
			pdu.NewDeliverSMRespSeq(p.Header().Seq).SerializeTo(nc)
		}
	}
	fmt.Println(srv.Submits()[0].Dst)
	// Output:
	// BindTransceiverResp 1 true
	// submit_sm_resp 1 2684354561
	// receipt 1
	// 231880000001
}
