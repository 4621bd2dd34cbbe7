-- Argo CD health check for dataforest.dev/AiApp, following the phase table of the
-- operator's status contract. Argo CD runs it with gopher-lua (Lua 5.1) and the
-- resource as the global `obj`; it returns {status = ..., message = ...}.
--
--   no status / no phase              Progressing (the operator has not seen it yet)
--   Pending                           Progressing, or Degraded when the Submitted
--                                     condition's reason needs a person
--   Submitting, Accepted, Running     Progressing
--   Succeeded                         Healthy
--   Failed, Killed, Unknown           Degraded
--   Suspended                         Suspended (spec.suspend: nothing runs; not an end)
--   Pending waiting to retry          Progressing (spec.backoffLimit: a retry is due)
--   any other phase                   Unknown (an operator newer than this script)
local hs = {}

-- Reasons of Submitted=False that no retry will cure: the spec or the keys must change.
local needs_a_person = {
  InvalidSpec = true,
  Unauthorized = true,
  EndpointNotAllowed = true,
  InvalidAnnotation = true,
  AdoptIdClaimed = true,
}

local function condition(status, type_name)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_name then
      return c
    end
  end
  return nil
end

-- status.message (what the API said), else the message of the condition that explains
-- the phase.
local function message_of(status, ...)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  for _, type_name in ipairs({...}) do
    local c = condition(status, type_name)
    if c ~= nil and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return ""
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the AiApp"
  return hs
end

local phase = status.phase
if phase == "Pending" then
  local submitted = condition(status, "Submitted")
  if submitted ~= nil and submitted.status == "False" and needs_a_person[submitted.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = message_of(status, "Submitted", "Synced")
elseif phase == "Submitting" or phase == "Accepted" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = message_of(status, "Synced", "Submitted")
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message_of(status, "Succeeded")
elseif phase == "Failed" or phase == "Killed" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = message_of(status, "Suspended")
elseif phase == "Unknown" then
  hs.status = "Degraded"
  hs.message = message_of(status, "Synced")
else
  hs.status = "Unknown"
  hs.message = "Unrecognised phase " .. tostring(phase)
end
if hs.message == "" then
  hs.message = "Phase " .. phase
end
return hs
