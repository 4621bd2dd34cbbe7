package main

import "testing"

// The vectors of the project's API reference (computed independently of any SDK).
func TestSignMatchesTheReferenceVectors(t *testing.T) {
	cases := []struct{ method, path, timestamp, accessKey, secret, want string }{
		{"POST", "/api/v2/aiapps/getDetail", "1658898041497", "17F9A6E9F72BD92ED94B",
			"EXAMPLESECRETKEY0123456789abcdefghijklmn", "RKX4VObHPBHt4dlLBbVLfJKOMUOsOJzO7daq3IMKNyo="},
		{"POST", "/api/v2/aiapps/submit", "1700000000000", "ACCESS_KEY_ID",
			"ncp-secret-example", "ZyK5fvTzBqujFiItlj7qzGXMKmL4yXNDMxQiyg3wRgY="},
	}
	for _, c := range cases {
		if got := sign(c.method, c.path, c.timestamp, c.accessKey, c.secret); got != c.want {
			t.Errorf("%s %s: got %s, want %s", c.method, c.path, got, c.want)
		}
	}
}

func TestPhasesFollowStateThenFinalStatus(t *testing.T) {
	cases := []struct{ state, final, want string }{
		{"ACCEPTED", "UNDEFINED", "Accepted"},
		{"RUNNING", "UNDEFINED", "Running"},
		{"FINISHED", "SUCCEEDED", "Succeeded"},
		{"FINISHED", "FAILED", "Failed"},
		{"FAILED", "FAILED", "Failed"},
		{"KILLED", "KILLED", "Killed"},
	}
	for _, c := range cases {
		if got := phaseOf(c.state, c.final); got != c.want {
			t.Errorf("%s/%s: got %s, want %s", c.state, c.final, got, c.want)
		}
	}
}
