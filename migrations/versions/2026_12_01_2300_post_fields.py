"""Posts get typed fields instead of one metadata document with well-known keys (issue 13).

`tags` becomes a text[] with a GIN index (array containment has element statistics, so two
common tags with a rare combination get an honest estimate); the location's district, the
language and the media list get columns of their own. Whatever else a document held stays,
untouched, in `attributes` (NULL when there is nothing), so no data is lost; the downgrade
rebuilds each document (a location given as a bare string comes back as {"district": ...}).

A key moves to its column only when it has the shape the typed field can hold; otherwise it
stays in `attributes` (e.g. a location object with more than a district).

Revision ID: 0005_post_fields
Revises: 0004_api_keys
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_post_fields"
down_revision = "0004_api_keys"
branch_labels = None
depends_on = None

# The shapes that move to typed columns (the rest stays in attributes).
_TAGS_OK = "jsonb_typeof(metadata->'tags') = 'array'"
_LANGUAGE_OK = "jsonb_typeof(metadata->'language') = 'string'"
_LOCATION_STRING = "jsonb_typeof(metadata->'location') = 'string'"
_LOCATION_DISTRICT = (
    "jsonb_typeof(metadata->'location') = 'object' "
    "AND (metadata->'location') - 'district' = '{}'::jsonb "
    "AND jsonb_typeof(metadata->'location'->'district') = 'string'"
)
# Media items keep their stored form, {"kind": "image"|"video", "url": ...}.
_MEDIA_OK = (
    "jsonb_typeof(metadata->'media') = 'array' AND NOT EXISTS ("
    "SELECT 1 FROM jsonb_array_elements(metadata->'media') item "
    "WHERE jsonb_typeof(item) <> 'object' "
    "OR COALESCE(item->>'kind', '') NOT IN ('image', 'video') "
    "OR jsonb_typeof(item->'url') IS DISTINCT FROM 'string' "
    "OR item - 'kind' - 'url' <> '{}'::jsonb)"
)


def upgrade() -> None:
    op.add_column(
        "posts",
        sa.Column("tags", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.add_column(
        "posts",
        sa.Column("location_district", sa.String(100), nullable=False, server_default=""),
    )
    op.add_column(
        "posts", sa.Column("language_code", sa.String(35), nullable=False, server_default="")
    )
    op.add_column("posts", sa.Column("media", postgresql.JSONB))
    op.add_column("posts", sa.Column("attributes", postgresql.JSONB))
    op.execute(
        f"""
        UPDATE posts SET
          tags = CASE WHEN {_TAGS_OK}
                 THEN ARRAY(SELECT jsonb_array_elements_text(metadata->'tags'))
                 ELSE '{{}}' END,
          language_code = CASE WHEN {_LANGUAGE_OK} THEN metadata->>'language' ELSE '' END,
          location_district = CASE
                 WHEN {_LOCATION_STRING} THEN metadata->>'location'
                 WHEN {_LOCATION_DISTRICT} THEN metadata->'location'->>'district'
                 ELSE '' END,
          media = CASE WHEN {_MEDIA_OK} AND metadata->'media' <> '[]'::jsonb
                  THEN metadata->'media' END,
          attributes = NULLIF(
                 metadata
                 - (CASE WHEN {_TAGS_OK} THEN 'tags' ELSE '' END)
                 - (CASE WHEN {_LANGUAGE_OK} THEN 'language' ELSE '' END)
                 - (CASE WHEN {_LOCATION_STRING} OR ({_LOCATION_DISTRICT})
                         THEN 'location' ELSE '' END)
                 - (CASE WHEN {_MEDIA_OK} THEN 'media' ELSE '' END),
                 '{{}}'::jsonb)
        """
    )
    op.drop_index("ix_posts_metadata", table_name="posts")
    op.drop_column("posts", "metadata")
    op.create_index("ix_posts_tags", "posts", ["tags"], postgresql_using="gin")


def downgrade() -> None:
    op.add_column(
        "posts",
        sa.Column(
            "metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
    )
    # The district comes back as {"district": ...}, the shape the demo data used.
    op.execute(
        """
        UPDATE posts SET metadata = COALESCE(attributes, '{}'::jsonb)
          || CASE WHEN tags <> '{}' THEN jsonb_build_object('tags', to_jsonb(tags))
                  ELSE '{}'::jsonb END
          || CASE WHEN language_code <> '' THEN jsonb_build_object('language', language_code)
                  ELSE '{}'::jsonb END
          || CASE WHEN location_district <> ''
                  THEN jsonb_build_object('location',
                         jsonb_build_object('district', location_district))
                  ELSE '{}'::jsonb END
          || CASE WHEN media IS NOT NULL THEN jsonb_build_object('media', media)
                  ELSE '{}'::jsonb END
        """
    )
    op.drop_index("ix_posts_tags", table_name="posts")
    for column in ("attributes", "media", "language_code", "location_district", "tags"):
        op.drop_column("posts", column)
    op.create_index(
        "ix_posts_metadata",
        "posts",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
