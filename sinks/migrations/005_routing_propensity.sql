-- Issue 18 (routing): the propensity an outcome was routed with (VariantRouter.choose), for off-policy estimates,
-- and the posterior evidence (successes, failures) the Q-values carry for Thompson sampling. Nullable: rows written
-- before, and outcomes not routed by choose, have none.

ALTER TABLE agent_outcomes ADD COLUMN IF NOT EXISTS propensity Nullable(Float64) AFTER next_state;

ALTER TABLE crl_qvalues ADD COLUMN IF NOT EXISTS successes Nullable(Int64) AFTER source_event_id;

ALTER TABLE crl_qvalues ADD COLUMN IF NOT EXISTS failures Nullable(Int64) AFTER successes;
