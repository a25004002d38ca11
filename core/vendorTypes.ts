/**
 * Types of codexdns's dependencies that show up in a plugin definition's inferred type: the option schema's
 * TypeBox types (`TObject<{ ttl: TInteger }>`) and tapable's hook types (`SyncHook<[string], void,
 * UnsetAdditionalOptions>` in what `declare()` returns). Re-exported by the package so that an author compiling
 * with `declaration: true` gets `import("codexdns").TObject` in their .d.ts instead of TS2742 ("the inferred type
 * cannot be named without a reference to codexdns/node_modules/@sinclair/typebox"), which a plugin linked to a
 * clone hits, and instead of a reference to a package the plugin does not depend on. Types only: nothing here
 * exists at run time. The TypeBox list is every `T…` type @sinclair/typebox 0.34 exports (TSchema is exported
 * beside Type in config/types).
 */
export type {
  TIncrement, TSetIncludes, TSetIsSubset, TSetDistinct, TSetIntersect, TSetUnion, TSetComplement,
  TSetIntersectMany, TSetUnionMany, TAny, TArray, TArgument, TAsyncIterator, TAwaited, TBigInt, TBoolean,
  TComposite, TConst, TConstructor, TConstructorParameters, TDate, TEnumRecord, TEnumValue, TEnumKey, TEnum,
  TExcludeFromMappedResult, TExcludeFromTemplateLiteral, TExclude, TExtendsFromMappedKey, TExtendsFromMappedResult,
  TExtends, TExtractFromMappedResult, TExtractFromTemplateLiteral, TExtract, TFunction, TIndexFromMappedKey,
  TIndexFromMappedResult, TIndexPropertyKeys, TIndexFromPropertyKey, TIndexFromPropertyKeys, TIndexFromComputed,
  TIndex, TInstanceType, TFromTypes, TFromType, TInstantiate, TInteger, TIntersectEvaluated,
  TUnevaluatedProperties, TIntersect, TIterator, TCapitalize, TIntrinsicFromMappedKey, TIntrinsic, TLowercase,
  TUncapitalize, TUppercase, TKeyOfFromMappedResult, TKeyOfPropertyKeys, TKeyOfFromType, TKeyOfPropertyKeysToRest,
  TKeyOf, TLiteralValue, TLiteral, TDefinitions, TImport, TMappedKey, TMappedResult, TMappedFunctionReturnType,
  TMappedFunction, TMapped, TNever, TNot, TNull, TNumber, TPropertyKey, TProperties, TAdditionalProperties,
  TObject, TOmitFromMappedKey, TOmitFromMappedResult, TOmitResolve, TOmit, TOptionalFromMappedResult,
  TOptionalWithFlag, TOptional, TParameters, TPartialFromMappedResult, TPartial, TPickFromMappedKey,
  TPickFromMappedResult, TPickResolve, TPick, TPromise, TReadonlyFromMappedResult, TReadonlyWithFlag, TReadonly,
  TReadonlyOptional, TRecord, TRecordOrObject, TRecordKey, TRecordValue, TThis, TRecursive, TRef, TRefUnsafe,
  TRegExp, TRequiredFromMappedResult, TRequired, TRest, TReturnType, TAnySchema, TKind, TDecodeType, TString,
  TSymbolValue, TSymbol, TIsTemplateLiteralFinite, TTemplateLiteralGenerate, TTemplateLiteralSyntax,
  TTemplateLiteralToUnionLiteralArray, TTemplateLiteralToUnion, TTemplateLiteralKind, TTemplateLiteral, TTransform,
  TTuple, TUint8Array, TUndefined, TUnionEvaluated, TUnion, TUnknown, TUnsafe, TVoid,
} from '@sinclair/typebox';

export type { UnsetAdditionalOptions, TypedHookMap, HookInterceptor, Tap, TapOptions } from 'tapable';
