-- Confirms one more submit of an AiApp in phase Unknown after a submit whose outcome is
-- unknown: writes status.resubmitToken into the annotation dataforest.dev/resubmit. The
-- token is bound to this AiApp and to the attempt it answers, so it confirms that attempt
-- only: a later ambiguity needs a new confirmation. Check first that no app of the attempt
-- runs (dataforest-operator apps list --prefix ...): the operator submits a new app.
local status = obj.status or {}
if status.phase ~= "Unknown" or status.resubmitToken == nil or status.resubmitToken == "" then
  error("resubmit applies to an AiApp in phase Unknown with status.resubmitToken set", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["dataforest.dev/resubmit"] = status.resubmitToken
return obj
