-- Argo CD health check for nova.dev/TrainingRun (Lua 5.1 as in Argo CD; also runs on Lua 5.4).
-- Install: argocd-cm key `resource.customizations.health.nova.dev_TrainingRun` (see argocd-cm.yaml).
--   Succeeded -> Healthy, Failed -> Degraded, Suspended -> Suspended, anything else -> Progressing.
-- A status written for an older generation of the spec is Progressing ("not yet observed"), as
-- kstatus does: status.observedGeneration < metadata.generation.
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the Nova operator"

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function progress(status)
  local parts = {}
  if status.trials ~= nil then
    table.insert(parts, "trials " .. tostring(status.trials))
  end
  if status.bestValue ~= nil then
    table.insert(parts, "best " .. tostring(status.bestValue))
  end
  if #parts == 0 then
    return ""
  end
  return " (" .. table.concat(parts, ", ") .. ")"
end

if obj.status ~= nil then
  local status = obj.status
  local generation = nil
  if obj.metadata ~= nil then
    generation = obj.metadata.generation
  end
  local phase = status.phase or "Pending"
  local message = status.message
  if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "The operator has not yet observed generation " .. tostring(generation)
  elseif phase == "Succeeded" then
    hs.status = "Healthy"
    hs.message = message or ("Succeeded" .. progress(status))
  elseif phase == "Failed" then
    hs.status = "Degraded"
    local failed = condition(status, "Failed") or condition(status, "Ready")
    if message == nil and failed ~= nil then
      message = (failed.reason or "Failed") .. ": " .. (failed.message or "")
    end
    hs.message = message or "Failed"
  elseif phase == "Suspended" then
    hs.status = "Suspended"
    hs.message = message or "Suspended (spec.suspend: true)"
  else
    hs.status = "Progressing"
    hs.message = message or (phase .. progress(status))
  end
end
return hs
