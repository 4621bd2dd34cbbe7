-- Cases for deploy/argocd/health.lua: each AiApp (only what the script reads) and the
-- health Argo CD must show. Run by hack/test-argocd-health.sh as
--   lua5.1 hack/argocd-health-cases.lua deploy/argocd/health.lua
local script = assert(arg[1], "usage: lua5.1 argocd-health-cases.lua HEALTH_LUA")
local check = assert(loadfile(script))

local function cond(type_name, status, reason, message)
  return { type = type_name, status = status, reason = reason, message = message }
end

local cases = {
  { "no status yet", {}, "Progressing" },
  { "status without a phase", { status = { conditions = {} } }, "Progressing" },
  { "Pending, waiting for credentials",
    { status = { phase = "Pending", conditions = {
      cond("Submitted", "False", "CredentialsNotFound", "Secret team-a/ncp-credentials not found") } } },
    "Progressing", "Secret team-a/ncp-credentials not found" },
  { "Pending, paused",
    { status = { phase = "Pending", conditions = { cond("Submitted", "False", "Paused", "paused") } } },
    "Progressing" },
  { "Pending, API unavailable",
    { status = { phase = "Pending", conditions = {
      cond("Submitted", "False", "ApiUnavailable", "connection refused"),
      cond("Synced", "False", "ApiUnavailable", "connection refused") } } },
    "Progressing" },
  { "Pending, invalid spec",
    { status = { phase = "Pending", message = "invalid request parameters", conditions = {
      cond("Submitted", "False", "InvalidSpec", "the API refused the spec") } } },
    "Degraded", "invalid request parameters" },
  { "Pending, unauthorized",
    { status = { phase = "Pending", conditions = {
      cond("Synced", "False", "Unauthorized", "Authentication Failed"),
      cond("Submitted", "False", "Unauthorized", "Authentication Failed") } } },
    "Degraded", "Authentication Failed" },
  { "Pending, endpoint not allowed",
    { status = { phase = "Pending", conditions = {
      cond("Submitted", "False", "EndpointNotAllowed", "endpoint http://evil is not allowed") } } },
    "Degraded" },
  { "Pending, malformed adopt-id",
    { status = { phase = "Pending", conditions = {
      cond("Submitted", "False", "InvalidAnnotation", "dataforest.dev/adopt-id is not an app id") } } },
    "Degraded" },
  { "Pending, adopt-id claimed by another AiApp",
    { status = { phase = "Pending", conditions = {
      cond("Submitted", "False", "AdoptIdClaimed", "another AiApp follows that app") } } },
    "Degraded" },
  { "Submitting", { status = { phase = "Submitting", conditions = {
      cond("Submitted", "Unknown", "Submitting", "submit sent") } } }, "Progressing" },
  { "Accepted", { status = { phase = "Accepted", id = "app-1" } }, "Progressing", "Phase Accepted" },
  { "Running", { status = { phase = "Running", message = "running on 1 GPU" } },
    "Progressing", "running on 1 GPU" },
  { "Succeeded", { status = { phase = "Succeeded", conditions = {
      cond("Succeeded", "True", "Succeeded", "final status SUCCEEDED") } } },
    "Healthy", "final status SUCCEEDED" },
  { "Failed", { status = { phase = "Failed", message = "exit code 1", conditions = {
      cond("Failed", "True", "AppFailed", "final status FAILED") } } },
    "Degraded", "exit code 1" },
  { "Failed by a deadline", { status = { phase = "Failed", conditions = {
      cond("Failed", "True", "DeadlineExceeded", "killed after the deadline") } } },
    "Degraded", "killed after the deadline" },
  { "Killed", { status = { phase = "Killed", conditions = { cond("Failed", "True", "Killed", "killed") } } },
    "Degraded" },
  { "Unknown", { status = { phase = "Unknown", conditions = {
      cond("Synced", "False", "SubmissionAmbiguous", "two apps match") } } },
    "Degraded", "two apps match" },
  { "Suspended by spec.suspend", { status = { phase = "Suspended", message = "spec.suspend is set", conditions = {
      cond("Suspended", "True", "Suspended", "spec.suspend is set") } } },
    "Suspended", "spec.suspend is set" },
  { "Running, being killed for a deadline", { status = { phase = "Running", message = "deadline passed: killing", conditions = {
      cond("FailureTarget", "True", "DeadlineExceeded", "deadline passed: killing") } } },
    "Progressing", "deadline passed: killing" },
  { "Pending, a retry is due", { status = { phase = "Pending", message = "retry 1 of 2 at 10:00", conditions = {
      cond("Submitted", "False", "Retrying", "retry 1 of 2 at 10:00") } } },
    "Progressing", "retry 1 of 2 at 10:00" },
  { "a phase this script does not know", { status = { phase = "Archived" } }, "Unknown" },
}

local failures = 0
for _, case in ipairs(cases) do
  local name, resource, want_status, want_message = case[1], case[2], case[3], case[4]
  resource.apiVersion = "dataforest.dev/v1alpha1"
  resource.kind = "AiApp"
  obj = resource -- Argo CD passes the resource as the global `obj`
  local ok, hs = pcall(check)
  if not ok then
    failures = failures + 1
    print("FAIL " .. name .. ": the script raised " .. tostring(hs))
  elseif type(hs) ~= "table" or hs.status ~= want_status then
    failures = failures + 1
    print("FAIL " .. name .. ": got " .. tostring(type(hs) == "table" and hs.status or hs) .. ", want " .. want_status)
  elseif type(hs.message) ~= "string" or hs.message == "" then
    failures = failures + 1
    print("FAIL " .. name .. ": no message")
  elseif want_message ~= nil and hs.message ~= want_message then
    failures = failures + 1
    print("FAIL " .. name .. ": message " .. string.format("%q", hs.message) .. ", want " .. string.format("%q", want_message))
  else
    print("ok   " .. name .. ": " .. hs.status .. " (" .. hs.message .. ")")
  end
end
if failures > 0 then
  print(failures .. " of " .. #cases .. " cases failed")
  os.exit(1)
end
print("all " .. #cases .. " cases pass")
