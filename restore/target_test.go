package restore

import (
	"errors"
	"testing"
	"time"
)

func TestTarget_Validate(t *testing.T) {
	yes := true
	ok := []Target{
		{},
		{Time: time.Now()},
		{XID: 1<<40 | 1234},
		{XID: 3},
		{Name: "before_upgrade"},
		{LSN: 0x3000060, Inclusive: &yes},
		{Immediate: true, Timeline: "current"},
		{Timeline: "latest"},
		{Timeline: "3"},
	}
	for _, tt := range ok {
		if err := tt.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", tt, err)
		}
	}
	bad := []Target{
		{Time: time.Now(), XID: 3},
		{XID: 2},
		{XID: 1 << 40}, // low 32 bits 0: no transaction's, as PostgreSQL reads it
		{XID: 1<<40 | 1},
		{Name: "a", LSN: 5},
		{Immediate: true, LSN: 5},
		{Inclusive: &yes},
		{Immediate: true, Inclusive: &yes},
		{Name: string(make([]byte, 64))},
		{Timeline: "0"},
		{Timeline: "newest"},
		{Timeline: "-1"},
	}
	for _, tt := range bad {
		if err := tt.Validate(); !errors.Is(err, ErrBadTarget) {
			t.Errorf("Validate(%+v) = %v, want ErrBadTarget", tt, err)
		}
	}
}
