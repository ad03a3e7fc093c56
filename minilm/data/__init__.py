"""minilm.data: the corpus every later chapter trains on (chapter 1)."""
from minilm.data.stories import (END_OF_TEXT, MAX_STORY_CHARS, Story, StoryConfig, StoryFacts, StoryWorld,
                                 corpus_entropy)
