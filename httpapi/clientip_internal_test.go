package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{"NoProxies", nil, "192.0.2.7:5555", []string{"203.0.113.9"}, "192.0.2.7"},
		{"IPv6Socket", nil, "[2001:db8::1]:443", nil, "2001:db8::1"},
		{"UntrustedPeerIgnoresHeader", proxies, "192.0.2.7:5555", []string{"203.0.113.9"}, "192.0.2.7"},
		{"TrustedPeer", proxies, "10.1.2.3:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"ForgedLeftHop", proxies, "10.1.2.3:80", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"ChainOfProxies", proxies, "10.1.2.3:80", []string{"203.0.113.9, 10.9.9.9", "10.8.8.8"}, "203.0.113.9"},
		{"AllTrusted", proxies, "10.1.2.3:80", []string{"10.4.4.4"}, "10.4.4.4"},
		{"NoHeader", proxies, "10.1.2.3:80", nil, "10.1.2.3"},
		{"MalformedHop", proxies, "10.1.2.3:80", []string{"203.0.113.9, not-an-ip"}, "10.1.2.3"},
		{"MappedIPv4", proxies, "[::1]:80", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{TrustedProxies: tt.trusted}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientIP(r); got != tt.want {
				t.Errorf("clientIP(remote %s, X-Forwarded-For %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}
