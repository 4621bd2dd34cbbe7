-- Unsets spec.suspend: the operator submits a new attempt (a new app on Data Forest).
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = false
return obj
