package main

// The Data Forest AI Apps API as this operator needs it: submit, getDetail and kill, each a
// POST signed with NCP's signature v2 (HMAC-SHA256 over "METHOD PATH\nTIMESTAMP\nACCESSKEY").

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const defaultEndpoint = "https://df.apigw.ntruss.com"

// credentials are one Secret's keys; the secret key never reaches a log or an error.
type credentials struct {
	accessKey string
	secretKey string
	endpoint  string
}

// apiClient is one pooled HTTP client shared by every AiApp.
type apiClient struct {
	http *http.Client
}

func newAPIClient(workers int) *apiClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The default keeps 2 idle connections per host; with one reconcile per worker in
	// flight, more would be opened and closed on every call.
	transport.MaxIdleConnsPerHost = workers
	return &apiClient{http: &http.Client{
		Transport: transport,
		// The same bound on a call as dataforest-operator's default --api-timeout.
		Timeout: 10 * time.Second,
		// The signed headers must not follow a redirect to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// sign returns the signature v2 of one request.
func sign(method, pathAndQuery, timestamp, accessKey, secretKey string) string {
	mac := hmac.New(sha256.New, []byte(secretKey))
	mac.Write([]byte(method + " " + pathAndQuery + "\n" + timestamp + "\n" + accessKey))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// appAnswer is what submit and getDetail answer, the fields this operator keeps.
type appAnswer struct {
	Success     *bool  `json:"success"`
	Message     string `json:"message"`
	ID          string `json:"id"`
	AppID       string `json:"appId"`
	Name        string `json:"name"`
	State       string `json:"state"`
	FinalStatus string `json:"finalStatus"`
}

// apiError is a call that failed; the message is the API's own, never the request.
type apiError struct {
	operation string
	status    int
	message   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.operation, e.status, e.message)
}

// call POSTs body to /api/v2/aiapps/<operation> below the endpoint and decodes the answer.
func (c *apiClient) call(ctx context.Context, creds credentials, operation string, body any) (*appAnswer, error) {
	base, err := url.Parse(creds.endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", creds.endpoint, err)
	}
	base.Path = strings.TrimSuffix(base.Path, "/") + "/api/v2/aiapps/" + operation
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String(), bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	timestamp := strconv.FormatInt(time.Now().UnixMilli(), 10)
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Accept", "application/json")
	request.Header.Set("x-ncp-apigw-timestamp", timestamp)
	request.Header.Set("x-ncp-iam-access-key", creds.accessKey)
	request.Header.Set("x-ncp-apigw-signature-v2",
		sign(http.MethodPost, base.EscapedPath(), timestamp, creds.accessKey, creds.secretKey))
	response, err := c.http.Do(request)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", operation, err)
	}
	defer func() { _ = response.Body.Close() }()
	text, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", operation, err)
	}
	var answer appAnswer
	decodeErr := json.Unmarshal(text, &answer)
	if response.StatusCode/100 != 2 || decodeErr != nil || (answer.Success != nil && !*answer.Success) {
		message := answer.Message
		if message == "" {
			message = strings.TrimSpace(string(text))
			if len(message) > 200 {
				message = message[:200]
			}
		}
		return nil, &apiError{operation: operation, status: response.StatusCode, message: message}
	}
	return &answer, nil
}

func (c *apiClient) submit(ctx context.Context, creds credentials, body map[string]any) (*appAnswer, error) {
	answer, err := c.call(ctx, creds, "submit", body)
	if err == nil && answer.ID == "" {
		return nil, &apiError{operation: "submit", status: 200, message: "the answer has no app id"}
	}
	return answer, err
}

func (c *apiClient) getDetail(ctx context.Context, creds credentials, id string) (*appAnswer, error) {
	return c.call(ctx, creds, "getDetail", map[string]string{"id": id})
}

func (c *apiClient) kill(ctx context.Context, creds credentials, id string) error {
	_, err := c.call(ctx, creds, "kill", map[string]string{"id": id})
	return err
}
