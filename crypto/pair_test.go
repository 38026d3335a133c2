package crypto

import (
	"errors"
	"testing"
)

func TestCheckPair(t *testing.T) {
	a, err := GenerateKey(1024)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey(1024)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		if err := CheckPair(&a.PublicKey, a); err != nil {
			t.Errorf("CheckPair of one pair: %v", err)
		}
	})
	t.Run("ErrMismatch", func(t *testing.T) {
		if err := CheckPair(&a.PublicKey, b); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("CheckPair of two pairs = %v, want ErrKeyMismatch", err)
		}
	})
}
