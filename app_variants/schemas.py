"""The tutorial's Pydantic schemas, for Pydantic 2.

The tutorial's ``PeeweeGetterDict`` (Pydantic 1) becomes ``from_attributes`` plus a
before-validator that turns the lazy ``user.items`` query into a list. That query runs
during response validation, after the endpoint has returned: part of the failure.
"""

from __future__ import annotations

from typing import Any

import peewee
from pydantic import BaseModel, ConfigDict, field_validator


class ItemBase(BaseModel):
    title: str
    description: str | None = None


class ItemCreate(ItemBase):
    pass


class Item(ItemBase):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int


class UserBase(BaseModel):
    email: str


class UserCreate(UserBase):
    password: str


class User(UserBase):
    model_config = ConfigDict(from_attributes=True)

    id: int
    is_active: bool
    items: list[Item] = []

    @field_validator("items", mode="before")
    @classmethod
    def _run_query(cls, value: Any) -> Any:
        if isinstance(value, peewee.ModelSelect):
            return list(value)
        return value
