package redis

import "time"

// TrustLeft returns how much longer the session cache may be served without another
// answer on the revocation channel (0: not trusted now).
func (s *Sessions) TrustLeft() time.Duration {
	c := s.confirmed.Load()
	if c == 0 {
		return 0
	}
	return max(0, sessTrustWindow-time.Duration(s.mono()-c))
}
