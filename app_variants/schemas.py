"""The tutorial's Pydantic schemas, on Pydantic 1 and 2.

The two majors differ in one thing here, settled in :class:`OrmModel`: how a Peewee
object's attributes are read. Pydantic 1 takes the tutorial's own ``orm_mode`` and
``PeeweeGetterDict``; Pydantic 2 has no ``GetterDict``, so ``from_attributes`` and a
before-validator do the same. Either way the lazy ``user.items`` query becomes a list
during response validation, after the endpoint has returned: part of the failure.
"""

from __future__ import annotations

from typing import Any

import peewee
import pydantic
from pydantic import BaseModel

PYDANTIC_V1 = pydantic.VERSION.startswith("1.")

if PYDANTIC_V1:
    from pydantic.utils import GetterDict

    class PeeweeGetterDict(GetterDict):
        def get(self, key: Any, default: Any = None) -> Any:
            res = getattr(self._obj, key, default)
            if isinstance(res, peewee.ModelSelect):
                return list(res)
            return res

    class OrmModel(BaseModel):
        class Config:
            orm_mode = True
            getter_dict = PeeweeGetterDict

else:
    from pydantic import ConfigDict, field_validator

    class OrmModel(BaseModel):
        model_config = ConfigDict(from_attributes=True)

        @field_validator("*", mode="before")
        @classmethod
        def _run_query(cls, value: Any) -> Any:
            if isinstance(value, peewee.ModelSelect):
                return list(value)
            return value


class ItemBase(BaseModel):
    title: str
    description: str | None = None


class ItemCreate(ItemBase):
    pass


class Item(ItemBase, OrmModel):
    id: int
    owner_id: int


class UserBase(BaseModel):
    email: str


class UserCreate(UserBase):
    password: str


class User(UserBase, OrmModel):
    id: int
    is_active: bool
    items: list[Item] = []
