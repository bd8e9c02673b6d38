"""The fixed category taxonomy: 16 topics a post is filed under, one each.

It follows TweetTopic's 19 Twitter topics (Antypas et al., COLING 2022), merged where posts of
two topics read alike to a reader of the feed (film and TV with celebrities, family with
relationships), so every category can be measured on a public labelled set. Adding or
renaming one means retraining (bench/insights_train.py) and is a breaking change for
whoever stored the names.
"""

from __future__ import annotations

from typing import Final

# Name → what a post filed there is about. Order is the model's class order.
CATEGORY_DESCRIPTIONS: Final[dict[str, str]] = {
    "Arts & Culture": "painting, photography, design, books, theatre, museums, history",
    "Business & Finance": "companies, jobs, startups, markets, money, crypto, the economy",
    "Daily Life": "what someone did or felt today; moods, weather, chores, small talk",
    "Education": "school, university, students, exams, learning and teaching",
    "Entertainment": "film, TV, streaming, celebrities, memes and pop culture",
    "Family & Relationships": "children, parents, partners, friends, dating, weddings",
    "Fashion & Beauty": "clothes, style, make-up, skincare, hair",
    "Food & Drink": "cooking, recipes, restaurants, coffee, wine, eating out",
    "Gaming": "video games, consoles, e-sports, streaming play, board games",
    "Health & Fitness": "exercise, gyms, running, diet, wellbeing, medicine, illness",
    "Music": "songs, albums, artists, concerts, festivals",
    "News & Politics": "current events, elections, government, crime, social causes, war",
    "Science & Technology": "gadgets, software, AI, the internet, space, research",
    "Sports": "matches, teams, athletes, leagues, results",
    "Travel": "trips, holidays, places, flights, hotels, the outdoors",
    "Other": "hobbies and anything that fits none of the above",
}
CATEGORIES: Final[tuple[str, ...]] = tuple(CATEGORY_DESCRIPTIONS)

# TweetTopic's labels in this taxonomy: how the public test set is scored (bench/insights.py).
FROM_TWEETTOPIC: Final[dict[str, str]] = {
    "arts_&_culture": "Arts & Culture",
    "business_&_entrepreneurs": "Business & Finance",
    "celebrity_&_pop_culture": "Entertainment",
    "diaries_&_daily_life": "Daily Life",
    "family": "Family & Relationships",
    "fashion_&_style": "Fashion & Beauty",
    "film_tv_&_video": "Entertainment",
    "fitness_&_health": "Health & Fitness",
    "food_&_dining": "Food & Drink",
    "gaming": "Gaming",
    "learning_&_educational": "Education",
    "music": "Music",
    "news_&_social_concern": "News & Politics",
    "other_hobbies": "Other",
    "relationships": "Family & Relationships",
    "science_&_technology": "Science & Technology",
    "sports": "Sports",
    "travel_&_adventure": "Travel",
    "youth_&_student_life": "Education",
}
