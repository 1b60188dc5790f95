"""The main job: train -> quantize -> convert -> edge_eval as stages that skip when up to date,
and the accuracy-aware recipe choice (``pipeline.choose``)."""
