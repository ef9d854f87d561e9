"""Fine-tuning the project's own models from labelled data: ``mining`` (training groups from the
hybrid retriever), ``loop`` (the shared optimisation loop), ``cross_encoder`` (the reranker),
``bi_encoder`` (the dense embedder), ``report`` (loss curves)."""

from rag.training.bi_encoder import EmbedderTrainConfig, train_bi_encoder
from rag.training.cross_encoder import TrainConfig, TrainReport, keep_layers, train_cross_encoder
from rag.training.mining import Group, labelled_from_beir, mine_groups, title_queries, unanswerable_from_beir

__all__ = ["EmbedderTrainConfig", "Group", "TrainConfig", "TrainReport", "keep_layers", "labelled_from_beir",
           "mine_groups", "title_queries", "train_bi_encoder", "train_cross_encoder", "unanswerable_from_beir"]
