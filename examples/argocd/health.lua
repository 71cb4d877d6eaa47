-- Argo CD health of an o2c.dev Connector, Pipeline or Workflow, read from its Ready condition. The
-- three kinds share one status contract (one reconciler writes it), so this one check serves all
-- three; argocd-cm.yaml embeds it once per kind. Argo CD runs custom checks without Lua's string
-- library, so this uses only the base language.

-- Ready=False reasons that resolve on their own while pods roll out
-- (operator/src/status/deployment-available.ts). Every other reason needs a person: a spec to fix,
-- a Connector or Secret to create, a broker to bring back. A reason not listed here counts as one of
-- those, so a failure the operator learns to report later shows up instead of spinning forever.
-- ProgressDeadlineExceeded (a rollout the Deployment controller gave up on: an image that cannot be
-- pulled, pods that never get ready) is Degraded on purpose: waiting longer does not fix it.
local settling = {
  DeploymentNotCreated = true,
  RollingOut = true,
  ReplicasUnavailable = true,
}

local hs = {}
local generation = obj.metadata.generation
local status = obj.status or {}

local ready = nil
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Ready" then
    ready = c
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the o2c operator to report on generation " .. tostring(generation) .. "."
  return hs
end

local message = ready.message or ""
local observed = ready.observedGeneration
if observed == nil then
  observed = status.observedGeneration
end

-- A condition about an older spec says nothing about the current one, whatever its status.
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the o2c operator to report on generation " .. tostring(generation)
    .. "; the status is about generation " .. tostring(observed)
    .. " (Ready=" .. tostring(ready.status) .. ": " .. message .. ")"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and not settling[ready.reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
