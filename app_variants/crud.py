"""The tutorial's CRUD helpers; they use the global ``db`` through the models."""

from __future__ import annotations

from harness.app_variants import models, schemas


def get_user(user_id: int) -> models.User | None:
    return models.User.filter(models.User.id == user_id).first()


def get_user_by_email(email: str) -> models.User | None:
    return models.User.filter(models.User.email == email).first()


def get_users(skip: int = 0, limit: int = 100) -> list[models.User]:
    return list(models.User.select().offset(skip).limit(limit))


def create_user(user: schemas.UserCreate) -> models.User:
    fake_hashed_password = user.password + "notreallyhashed"
    db_user = models.User(email=user.email, hashed_password=fake_hashed_password)
    db_user.save()
    return db_user


def get_items(skip: int = 0, limit: int = 100) -> list[models.Item]:
    return list(models.Item.select().offset(skip).limit(limit))


def create_user_item(item: schemas.ItemCreate, user_id: int) -> models.Item:
    db_item = models.Item(**dict(item), owner_id=user_id)  # dict(): the same on Pydantic 1 and 2
    db_item.save()
    return db_item
