-- Argo CD health check for dataforest.dev/AiApp. Argo CD runs it with gopher-lua (Lua 5.1)
-- and the resource as the global `obj`; it returns {status = ..., message = ...}. It uses
-- only the base library: Argo CD opens no string or math library for argocd-cm scripts.
--
--   Succeeded                                  Healthy
--   Failed, Killed                             Degraded (ended)
--   paused (annotation dataforest.dev/paused: "true", or the reason Paused), not ended
--                                              Suspended
--   Suspended (spec.suspend: no app runs)      Suspended
--   Unknown (the operator lost track)          Degraded
--   Pending, Submitting, Accepted, Running     Degraded when the reason that explains the
--                                              phase needs a person, else Progressing
--   no status yet                              Progressing
--   any other phase (a newer operator)         Unknown
--
-- The reason that explains the phase is status.reason; an operator older than that field
-- left it out, and then it is the reason of the Submitted or Synced condition that is
-- False. deploy/argocd/README.md and docs/status.md show this script as a table.
local hs = {}

-- The operator's list of reasons after which nothing changes until a person acts
-- (NEEDS_A_PERSON in src/reasons.rs). tests/argocd_lua.rs fails when the two differ;
-- UPDATE_ARGOCD_LUA=1 cargo test --test argocd_lua rewrites this block from the Rust list.
-- BEGIN NEEDS_A_PERSON
local needs_a_person = {
  CredentialsNotFound = true,
  SecretUnreadable = true,
  EndpointNotAllowed = true,
  EnvSecretNotFound = true,
  EnvSecretKeyNotFound = true,
  EnvSecretKeyInvalid = true,
  EnvTooLarge = true,
  InvalidAnnotation = true,
  AdoptIdClaimed = true,
  Unauthorized = true,
  InvalidSpec = true,
  EndpointNotFound = true,
  NotFound = true,
  ApiError = true,
  SubmissionAmbiguous = true,
  AppNotFound = true,
}
-- END NEEDS_A_PERSON

local function condition(status, type_name)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_name then
      return c
    end
  end
  return nil
end

-- status.reason, else the reason of Submitted=False, else of Synced=False.
local function explaining_reason(status)
  if status.reason ~= nil and status.reason ~= "" then
    return status.reason
  end
  for _, type_name in ipairs({ "Submitted", "Synced" }) do
    local c = condition(status, type_name)
    if c ~= nil and c.status == "False" and c.reason ~= nil and c.reason ~= "" then
      return c.reason
    end
  end
  return nil
end

-- status.message (the operator's or Data Forest's last word), else the message of the
-- first of these conditions that has one.
local function message_of(status, ...)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  for _, type_name in ipairs({ ... }) do
    local c = condition(status, type_name)
    if c ~= nil and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return ""
end

local function paused(resource, reason)
  local annotations = resource.metadata ~= nil and resource.metadata.annotations or nil
  if annotations ~= nil and annotations["dataforest.dev/paused"] == "true" then
    return true
  end
  return reason == "Paused"
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  if paused(obj, nil) then
    hs.status = "Suspended"
    hs.message = "Paused by the dataforest.dev/paused annotation"
  else
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to pick up the AiApp"
  end
  return hs
end

local phase = status.phase
local reason = explaining_reason(status)
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message_of(status, "Succeeded")
elseif phase == "Failed" or phase == "Killed" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Failed")
elseif paused(obj, reason) then
  hs.status = "Suspended"
  hs.message = message_of(status, "Synced", "Submitted")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(status, "Suspended")
elseif phase == "Unknown" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Synced")
elseif phase == "Pending" or phase == "Submitting" or phase == "Accepted" or phase == "Running" then
  if reason ~= nil and needs_a_person[reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = message_of(status, "Synced", "Submitted")
else
  hs.status = "Unknown"
  hs.message = "Unrecognised phase " .. tostring(phase)
end
if hs.message == "" then
  hs.message = "Phase " .. phase
end
return hs
