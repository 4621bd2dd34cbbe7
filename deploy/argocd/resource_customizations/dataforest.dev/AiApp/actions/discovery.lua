-- Argo CD resource actions for dataforest.dev/AiApp, offered only where they apply:
--   suspend    spec.suspend is not set and the AiApp has not ended: the operator kills a
--              live app and holds the AiApp in phase Suspended.
--   resume     spec.suspend is set: the operator submits a new attempt.
--   resubmit   phase Unknown after a submit whose outcome is unknown (status.resubmitToken
--              is set): confirms one more submit for that attempt, as
--              `kubectl annotate aiapp NAME dataforest.dev/resubmit=<resubmitToken>` does.
--              Shown disabled once the annotation holds that token.
-- Nothing is offered while the AiApp is being deleted or once it ended. In Unknown only
-- resubmit is: the operator does nothing else until a person resolved the AiApp.
local actions = {}
local status = obj.status or {}
local phase = status.phase
local ended = phase == "Succeeded" or phase == "Failed" or phase == "Killed"
local deleting = obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil

if deleting or ended then
  return actions
end
if phase == "Unknown" then
  local token = status.resubmitToken
  if token ~= nil and token ~= "" then
    local annotations = obj.metadata.annotations or {}
    actions["resubmit"] = {
      ["iconClass"] = "fa fa-fw fa-redo",
      ["displayName"] = "Resubmit",
      ["disabled"] = annotations["dataforest.dev/resubmit"] == token,
    }
  end
  return actions
end
if obj.spec ~= nil and obj.spec.suspend == true then
  actions["resume"] = { ["iconClass"] = "fa fa-fw fa-play", ["displayName"] = "Resume" }
else
  actions["suspend"] = { ["iconClass"] = "fa fa-fw fa-pause", ["displayName"] = "Suspend" }
end
return actions
