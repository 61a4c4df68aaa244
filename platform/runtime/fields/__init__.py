"""Field types. ``default_registry`` builds the registry every runtime uses."""
from .base import OPERATOR_ARITY, OPERATOR_LABELS, FieldType, FilterContext
from .choice import MultiSelectType, SingleSelectType, TagsType
from .computed import COMPUTED_TYPES, FormulaType, LookupType, RollupType, effective_operators
from .files import AttachmentType
from .identity import IdNumberType, SequenceType
from .numeric import BooleanType, DecimalType, IntegerType, MoneyType, PercentType
from .registry import FieldTypeRegistry
from .relation import ChildTableType, LinkType, OrgUnitType, UserType
from .temporal import DateTimeType, DateType
from .text import EmailType, LongTextType, PhoneType, TextType, UrlType


def default_registry(timezone: str = "Asia/Shanghai") -> FieldTypeRegistry:
    return FieldTypeRegistry([
        TextType(), LongTextType(), IntegerType(), DecimalType(), MoneyType(), PercentType(),
        BooleanType(), DateType(), DateTimeType(timezone), SingleSelectType(), MultiSelectType(),
        EmailType(), PhoneType(), UrlType(), IdNumberType(), SequenceType(), LinkType(),
        ChildTableType(), TagsType(), AttachmentType(), UserType(), OrgUnitType(),
        FormulaType(timezone), LookupType(timezone), RollupType(),
    ])


__all__ = [
    "COMPUTED_TYPES", "OPERATOR_ARITY", "effective_operators", "OPERATOR_LABELS", "FieldType", "FieldTypeRegistry", "FilterContext", "default_registry",
]
