"""minilm.data: the corpus every later chapter trains on (chapter 1).

    from minilm.data import build_corpus, CorpusConfig, StoryWorld, StoryConfig
    corpus = build_corpus(CorpusConfig.for_preset())            # DatasetDict: train, validation, test
    world = StoryWorld(StoryConfig())                             # the story source, exact probabilities

Modules, in pipeline order:
    documents  the Document type and the pipeline's errors
    sources    standard-library prose and code (read with ast), local files, `datasets` datasets
    stories    the story world (with story_words, language and choices)
    clean      Unicode, control characters, licence headers, doctests, reST, whitespace
    quality    heuristic quality filters with thresholds
    dedup      exact and near-duplicate (MinHash + LSH) removal
    splits     mixing by weight; deterministic, leakage-free splits
    stats      per-source statistics
    corpus     the whole pipeline, cached as a DatasetDict

Chapter 7 measures what the pipeline buys:
    stages              the corpus after each step, for a model per step
    contamination       long n-gram overlap between training data and evaluation sets
    quality_classifier  a learned quality filter: hashed n-grams and logistic regression
"""
from minilm.data.corpus import (CorpusConfig, PipelineResult, build_corpus, corpus_path, corpus_report,
                                dataset_entropy, run_pipeline)
from minilm.data.documents import (DataError, DatasetUnavailableError, Document, EmptyCorpusError,
                                   MissingFileError, NotUtf8Error)
from minilm.data.stories import (END_OF_TEXT, MAX_STORY_CHARS, Story, StoryConfig, StoryFacts, StoryWorld,
                                 corpus_entropy, entropy_from_log_probs)

__all__ = ["CorpusConfig", "DataError", "DatasetUnavailableError", "Document", "END_OF_TEXT",
           "EmptyCorpusError", "MAX_STORY_CHARS", "MissingFileError", "NotUtf8Error", "PipelineResult",
           "Story", "StoryConfig", "StoryFacts", "StoryWorld", "build_corpus", "corpus_entropy",
           "corpus_path", "corpus_report", "dataset_entropy", "entropy_from_log_probs", "run_pipeline"]
