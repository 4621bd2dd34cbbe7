-- Sets spec.suspend: the operator kills a live app (the AiApp stays Running until Data
-- Forest shows it ended) and holds the AiApp in phase Suspended until it is unset. If Git
-- also sets spec.suspend, self-heal puts Git's value back: leave the field out of Git, or
-- ignore its differences (deploy/argocd/README.md).
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.suspend = true
return obj
