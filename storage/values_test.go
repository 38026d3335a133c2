package storage

import (
	"testing"

	"github.com/ncw/swift/v2"
)

// TestConfigValues checks that every value storage lists for a key
// (config accepts exactly these) opens as the documented setting, that
// unset takes the default, and that another value is refused.
func TestConfigValues(t *testing.T) {
	for _, c := range AzureClouds {
		if _, ok := azureSuffixes[c]; !ok {
			t.Errorf("azure_cloud %q has no endpoint suffix", c)
		}
	}
	if len(azureSuffixes) != len(AzureClouds) {
		t.Errorf("azureSuffixes has clouds AzureClouds does not list")
	}
	for v, want := range map[string]int{"": 2, "1": 1, "1.0": 1, "2": 2, "2.0": 2, "3": 3, "3.0": 3, "4.0": 0} {
		if got, err := swiftAuthVersion(v); got != want || (err == nil) != (want != 0) {
			t.Errorf("auth_version %q: got %d, %v; want %d", v, got, err, want)
		}
	}
	if len(SwiftAuthVersions) != 6 {
		t.Errorf("SwiftAuthVersions = %q, want the six the test above checks", SwiftAuthVersions)
	}
	for v, want := range map[string]swift.EndpointType{"": swift.EndpointTypePublic, "publicURL": swift.EndpointTypePublic,
		"internalURL": swift.EndpointTypeInternal, "adminURL": swift.EndpointTypeAdmin, "public": swift.EndpointTypePublic,
		"internal": swift.EndpointTypeInternal, "admin": swift.EndpointTypeAdmin, "privateURL": ""} {
		if got, err := swiftEndpoint(v); got != want || (err == nil) != (want != "") {
			t.Errorf("endpoint_type %q: got %q, %v; want %q", v, got, err, want)
		}
	}
	if len(SwiftEndpointTypes) != 6 {
		t.Errorf("SwiftEndpointTypes = %q, want the six the test above checks", SwiftEndpointTypes)
	}
}
